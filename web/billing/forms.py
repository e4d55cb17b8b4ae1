"""The auto top-up settings form. Amounts are typed as decimals ("20.00") and cleaned like every amount."""

from django import forms

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
