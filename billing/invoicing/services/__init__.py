"""Invoicing writes (keyword-only): closing periods into invoices."""

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

__all__ = [
    "CLOSE_STEPS",
    "invoice_aggregate",
    "invoice_close",
    "invoice_finalize",
    "invoice_open",
    "invoices_close_due",
    "minor_round",
    "period_next",
    "profile_get",
]
