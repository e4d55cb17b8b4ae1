"""Forms of the staff console's organization billing page. They only parse what was typed; the services decide.
Every change asks why: the reason is kept in the audit log."""

from django import forms

from billing.invoicing.models import CollectionMethod
from web.staff.forms import AmountInput, WholeNumberInput


class ReasonField(forms.CharField):
    def __init__(self) -> None:
        super().__init__(max_length=500, label="Why", help_text="kept in the audit log")


class BillingProfileForm(forms.Form):
    anchor_day = WholeNumberInput(
        min_value=1, max_value=28, label="Anchor day", help_text="periods start on this day of the month (1-28)"
    )
    collection_method = forms.ChoiceField(choices=CollectionMethod.choices, label="Collection method")
    days_until_due = WholeNumberInput(
        min_value=1, max_value=365, label="Net terms (days)", help_text="days to pay a sent invoice"
    )
    progressive_threshold = AmountInput(
        required=False,
        label="Progressive billing threshold",
        help_text="postpaid debt in a running period that triggers an invoice at once; empty: the site's default",
    )
    reason = ReasonField()


class OverdraftForm(forms.Form):
    overdraft_limit = AmountInput(
        label="Overdraft limit", help_text="how far below zero available credit may go (postpaid use); 0 stops at zero"
    )
    reason = ReasonField()


class SuspensionForm(forms.Form):
    reason = ReasonField()
