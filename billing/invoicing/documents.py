"""An invoice as plain data (amounts as decimal strings in the main unit, and in nano-units), for the operator
commands; the staff API renders the same fields with its serializers."""

from typing import Any

from billing.invoicing.models import NANO_PER_MINOR, Invoice, InvoiceLine
from core.money import format_amount


def invoice_document(invoice: Invoice, lines: list[InvoiceLine] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": invoice.pk,
        "organization_id": invoice.organization_id,
        "number": invoice.number or None,
        "status": invoice.status,
        "currency": invoice.currency,
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "charges": format_amount(invoice.charges_nano),
        "credit_applied": format_amount(invoice.credit_applied_nano),
        "carry_in": format_amount(invoice.carry_in_nano),
        "total_exact": format_amount(invoice.total_exact_nano),
        "total": format_amount(invoice.total_minor * NANO_PER_MINOR),
        "total_minor": invoice.total_minor,
        "carry_out": format_amount(invoice.carry_out_nano),
        "finalized_at": invoice.finalized_at.isoformat() if invoice.finalized_at else None,
        "stripe_invoice_id": invoice.stripe_invoice_id or None,
        "push_error": invoice.push_error or None,
        "payment_error": invoice.payment_error or None,
    }
    if lines is not None:
        document["lines"] = [
            {
                "position": line.position,
                "kind": line.kind,
                "description": line.description,
                "quantity": line.quantity,
                "unit": line.unit,
                "amount": format_amount(line.amount_nano),
                "amount_nano": line.amount_nano,
            }
            for line in lines
        ]
    return document
