"""Forms of the staff invoices console. They only parse what a person typed; the services decide."""

import re
from typing import Any

from django import forms

from billing.invoicing.models import DocumentKind, InvoiceLine, InvoiceStatus
from billing.invoicing.services.credit_notes import KEY_MAX_LENGTH, REASON_MAX_LENGTH, LineCredit
from web.staff.forms import AmountInput, ConsoleForm, organization_choices

MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class InvoiceFilterForm(ConsoleForm):
    """Filters of the invoices list; every one optional."""

    organization = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *InvoiceStatus.choices])
    kind = forms.ChoiceField(required=False, choices=[("", "Any"), *DocumentKind.choices])
    period = forms.CharField(required=False, max_length=7, label="Period (YYYY-MM)")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choices("organization", [("", "Any"), *organization_choices()])

    def clean_period(self) -> tuple[int, int] | None:
        text = (self.cleaned_data.get("period") or "").strip()
        if not text:
            return None
        match = MONTH.fullmatch(text)
        if match is None:
            raise forms.ValidationError("Enter a month as YYYY-MM, e.g. 2026-10.")
        return int(match.group(1)), int(match.group(2))


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, strip=True, widget=forms.Textarea(attrs={"rows": 2}))


class CreditNoteForm(ReasonForm):
    """Chosen charge lines (a checkbox each) and, for each, the part to credit (empty: all that is left)."""

    idempotency_key = forms.CharField(max_length=KEY_MAX_LENGTH, widget=forms.HiddenInput)

    def __init__(self, *args: Any, lines: list[InvoiceLine], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines = lines
        for line in lines:
            self.fields[f"line_{line.position}"] = forms.BooleanField(required=False, label=f"Line {line.position}")
            self.fields[f"amount_{line.position}"] = AmountInput(
                required=False, label=f"Amount of line {line.position}"
            )

    def rows(self) -> list[tuple[InvoiceLine, bool, str]]:
        """Each line with what the form holds for it (ticked, the amount typed), so that a page shown again for an
        error keeps what the person entered."""
        return [
            (line, bool(self[f"line_{line.position}"].value()), self[f"amount_{line.position}"].value() or "")
            for line in self.lines
        ]

    def credits(self) -> list[LineCredit]:
        # An empty amount is None (all that is left); a zero stays zero, for the service to refuse.
        return [
            LineCredit(line.position, self.cleaned_data.get(f"amount_{line.position}"))
            for line in self.lines
            if self.cleaned_data.get(f"line_{line.position}")
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not any(data.get(f"line_{line.position}") for line in self.lines):
            raise forms.ValidationError("Choose at least one line to credit.")
        return data
