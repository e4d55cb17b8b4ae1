"""The billing pages' forms: auto top-up (amounts typed as decimals, "20.00", cleaned like every amount) and
billing details."""

import re

from django import forms

from billing.invoicing.countries import COUNTRIES
from billing.invoicing.taxids import TAX_ID_TYPES
from billing.payments.services.common import money_clean
from core.errors import ApplicationError


class AmountField(forms.CharField):
    """A decimal amount in the currency's main unit, cleaned to nano-units (whole cents)."""

    def __init__(self, *, allow_zero: bool = False, **kwargs: object) -> None:
        self.allow_zero = allow_zero
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off"})

    def clean(self, value: object) -> int:  # type: ignore[override]
        text = super().clean(value)
        try:
            return money_clean(text, param=str(self.label or "amount"), allow_zero=self.allow_zero)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message, code="invalid") from None


class AutoTopUpForm(forms.Form):
    enabled = forms.BooleanField(label="Turn auto top-up on", required=False)
    threshold = AmountField(
        label="threshold",
        allow_zero=True,
        help_text="When available credit falls below this after a request, the saved card is charged.",
    )
    amount = AmountField(label="amount", help_text="How much each automatic top-up adds.")
    daily_cap = AmountField(label="daily cap", help_text="The most auto top-up may charge per day (UTC).")


class BillingDetailsForm(forms.Form):
    """Who invoices are addressed to. Only parses what was typed; billing_details_set checks and normalizes."""

    legal_name = forms.CharField(label="Legal name", max_length=200)
    address_line1 = forms.CharField(label="Address line 1", max_length=200)
    address_line2 = forms.CharField(label="Address line 2", max_length=200, required=False)
    city = forms.CharField(label="City", max_length=100)
    postal_code = forms.CharField(label="Postal code", max_length=20, required=False)
    region = forms.CharField(label="Region or state", max_length=100, required=False)
    country = forms.ChoiceField(label="Country")
    tax_id_type = forms.ChoiceField(label="Tax ID type", required=False)
    tax_id_value = forms.CharField(label="Tax ID", max_length=60, required=False)
    emails = forms.CharField(
        label="Billing emails",
        max_length=3000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One or more addresses (one a line, or separated by commas) that receive invoices and payment "
        "emails. Empty: the owners and billing admins.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["country"].choices = [("", "—"), *sorted(COUNTRIES.items(), key=lambda item: item[1])]  # type: ignore[attr-defined]
        self.fields["tax_id_type"].choices = [  # type: ignore[attr-defined]
            ("", "None"),
            *((key, f"{kind.label} (e.g. {kind.example})") for key, kind in TAX_ID_TYPES.items()),
        ]

    def clean_emails(self) -> list[str]:
        return [part for part in re.split(r"[\s,;]+", self.cleaned_data["emails"]) if part]
