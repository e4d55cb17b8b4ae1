"""Celery: send a delivery and retry it with backoff; the beat sweep for lost deliveries; api_key.expiring."""

import logging

from celery import Task, shared_task
from django.utils import timezone

from billing.webhooks import services
from billing.webhooks.models import DeliveryStatus

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, max_retries=None)
def webhook_delivery_task(self: Task, delivery_id: int) -> str:  # type: ignore[type-arg]
    """One attempt; when it failed and the window allows, the same task again at the delivery's next time. A call
    that sent nothing (not due, or another worker's) stops here, so one delivery has one chain of retries."""
    attempted = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if attempted is None:
        return "gone"
    delivery = attempted.delivery
    if attempted.sent and delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at is not None:
        countdown = max((delivery.next_attempt_at - timezone.now()).total_seconds(), 0.0)
        raise self.retry(countdown=countdown)
    return str(delivery.status)


@shared_task(acks_late=True)
def webhooks_sweep_task() -> int:
    """Queue the deliveries whose task was lost. Returns how many."""
    due = services.webhook_deliveries_due()
    for delivery_id in due:
        webhook_delivery_task.delay(delivery_id)
    return len(due)


@shared_task(acks_late=True)
def webhooks_keys_expiring_task() -> int:
    return services.webhook_keys_expiring_emit()
