"""The outbound webhook events about invoices (billing.webhooks), emitted in the transaction that changes them."""

from billing.invoicing.models import NANO_PER_MINOR, Invoice
from billing.webhooks.models import EventType
from billing.webhooks.services import webhook_event_emit
from core.money import format_amount


def invoice_event_emit(*, invoice: Invoice, event_type: EventType, idempotency_key: str) -> None:
    webhook_event_emit(
        organization_id=invoice.organization_id,
        event_type=event_type,
        data={
            "invoice": {
                "id": invoice.pk,
                "number": invoice.number,
                "status": invoice.status,
                "currency": invoice.currency,
                "period_start": invoice.period_start.isoformat(),
                "period_end": invoice.period_end.isoformat(),
                "total": format_amount(invoice.total_minor * NANO_PER_MINOR),
                "total_minor": invoice.total_minor,
                "collection_method": invoice.collection_method,
                "days_until_due": invoice.days_until_due,
                "payment_attempts": invoice.payment_attempts,
                "payment_error": invoice.payment_error,
                "hosted_invoice_url": invoice.hosted_invoice_url,
            }
        },
        idempotency_key=idempotency_key,
    )
