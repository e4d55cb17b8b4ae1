"""The outbound webhook events about top-ups (billing.webhooks), emitted in the transaction that changes them."""

from billing.payments.models import TopUp
from billing.webhooks.models import EventType
from billing.webhooks.services import webhook_event_emit
from core.money import format_amount


def topup_event_emit(*, top_up: TopUp, event_type: EventType) -> None:
    """top_up.succeeded, top_up.failed or auto_top_up.failed, once per top-up and type."""
    webhook_event_emit(
        organization_id=top_up.organization_id,
        event_type=event_type,
        data={
            "top_up": {
                "id": top_up.pk,
                "receipt_number": top_up.receipt_number,
                "kind": top_up.kind,
                "status": top_up.status,
                "amount": format_amount(top_up.amount_nano),
                "amount_nano": top_up.amount_nano,
                "currency": top_up.currency,
                "card_last4": top_up.card_last4,
                "failure_message": top_up.failure_message,
                "failure_code": top_up.failure_code,
            }
        },
        idempotency_key=f"{event_type}:{top_up.pk}",
    )
