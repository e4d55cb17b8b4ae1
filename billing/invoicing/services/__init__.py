"""Invoicing writes (keyword-only): closing periods into invoices, and staff's billing profiles."""

from billing.invoicing.services.close import (
    CLOSE_STEPS,
    invoice_aggregate,
    invoice_close,
    invoice_finalize,
    invoice_open,
    invoices_close_due,
    minor_round,
    period_next,
    profile_get,
)
from billing.invoicing.services.profiles import billing_profile_set

__all__ = [
    "CLOSE_STEPS",
    "billing_profile_set",
    "invoice_aggregate",
    "invoice_close",
    "invoice_finalize",
    "invoice_open",
    "invoices_close_due",
    "minor_round",
    "period_next",
    "profile_get",
]
