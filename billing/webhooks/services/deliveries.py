"""Deliveries: send one, record the attempt, schedule the retry; redeliver by hand; send a test event.

An attempt is claimed by a conditional UPDATE (pending, due) that moves `next_attempt_at` to the end of a lease
and counts the attempt: of two workers holding the same delivery (a task delivered twice, the sweep and a retry),
one updates the row and the other sees 0 rows and sends nothing. The HTTP request runs outside any transaction; its
outcome is recorded afterwards. A worker that dies mid-attempt leaves the lease to run out, and the sweep sends the
delivery again.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.services import audit_record
from billing.webhooks import transport
from billing.webhooks.errors import NotFound
from billing.webhooks.models import DeliveryStatus, EventType, WebhookAttempt, WebhookDelivery
from billing.webhooks.services.endpoints import Actor, endpoint_of
from billing.webhooks.services.events import delivery_enqueue, webhook_test_event_record
from billing.webhooks.signing import SIGNATURE_HEADER, signature_header

MAX_RETRY_DELAY = timedelta(hours=4)
# How long after it fell due the sweep takes a pending delivery as lost (its task never ran).
SWEEP_GRACE = timedelta(minutes=2)
# A retry's task may run a moment before the time it was scheduled for (another clock): it still counts as due.
CLAIM_SLACK = timedelta(seconds=1)


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: the base, doubled each time, at most MAX_RETRY_DELAY."""
    base = settings.WEBHOOKS_RETRY_BASE_SECONDS
    return min(timedelta(seconds=base * 2 ** min(attempts - 1, 20)), MAX_RETRY_DELAY)


def _lease() -> timedelta:
    # Longer than the longest attempt (connect, send, read: transport bounds the whole at twice the timeout).
    return timedelta(seconds=3 * settings.WEBHOOKS_TIMEOUT_SECONDS + 30)


@dataclass(frozen=True)
class Attempted:
    delivery: WebhookDelivery
    # False when this call sent nothing (not due, already delivered or given up, or another worker holds it).
    sent: bool


def webhook_delivery_attempt(*, delivery_id: int) -> Attempted | None:
    """Send a due delivery once and record the outcome: succeeded, pending again (with the next time), or failed
    (the retry window is over, or the endpoint was disabled). None when the delivery no longer exists."""
    started_at = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=started_at + CLAIM_SLACK
    ).update(attempts=F("attempts") + 1, next_attempt_at=started_at + _lease())
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").filter(pk=delivery_id).first()
    if delivery is None:  # its endpoint was deleted
        return None
    if not claimed:
        return Attempted(delivery, sent=False)
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.enabled and event.type != EventType.TEST:
        answer = transport.Answer(None, "the endpoint is disabled", 0)
    else:
        body = event.body.encode()
        headers = {
            SIGNATURE_HEADER: signature_header(secret=endpoint.secret, timestamp=int(time.time()), body=body),
            "Webhook-Id": event.event_id,
            "Webhook-Event-Type": event.type,
            "Webhook-Attempt": str(delivery.attempts),
        }
        answer = transport.post(url=endpoint.url, body=body, headers=headers)
    return Attempted(_outcome_record(delivery, answer, started_at=started_at), sent=True)


def _outcome_record(delivery: WebhookDelivery, answer: transport.Answer, *, started_at: datetime) -> WebhookDelivery:
    now = timezone.now()
    changes: dict[str, object] = {"last_status_code": answer.status_code, "last_error": answer.error}
    if answer.succeeded:
        changes |= {"status": DeliveryStatus.SUCCEEDED, "next_attempt_at": None, "delivered_at": now}
    elif not delivery.endpoint.enabled and delivery.event.type != EventType.TEST:
        changes |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        next_at = now + retry_delay(delivery.attempts)
        if next_at > delivery.retry_until:
            changes |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
        else:
            changes |= {"status": DeliveryStatus.PENDING, "next_attempt_at": next_at}
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=started_at,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            succeeded=answer.succeeded,
            error=answer.error,
        )
        # Only while the row is still this attempt's (no later claim, no redelivery by hand in between).
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
        ).update(**changes)
    delivery.refresh_from_db()
    return delivery


def _delivery_of(*, organization_id: int, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    delivery = (
        WebhookDelivery.objects.select_for_update()
        .filter(pk=delivery_id, endpoint_id=endpoint_id, endpoint__organization_id=organization_id)
        .first()
    )
    if delivery is None:
        raise NotFound("webhook delivery not found", param="delivery_id")
    return delivery


@transaction.atomic
def webhook_delivery_redeliver(
    *, organization_id: int, endpoint_id: int, delivery_id: int, actor: Actor
) -> WebhookDelivery:
    """Send a delivery of the endpoint again now (whatever its state), with a new retry window; the same event, the
    same id, so a receiver that already has it can tell. NotFound for another endpoint's or organization's."""
    delivery = _delivery_of(organization_id=organization_id, endpoint_id=endpoint_id, delivery_id=delivery_id)
    now = timezone.now()
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.retry_until = now + timedelta(seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS)
    delivery.save(update_fields=["status", "next_attempt_at", "retry_until"])
    audit_record(
        actor=actor,
        action="webhook.redeliver",
        organization_id=organization_id,
        target=f"WebhookDelivery:{delivery.pk}",
        detail={"endpoint_id": delivery.endpoint_id, "event_id": delivery.event_id},
    )
    transaction.on_commit(partial(delivery_enqueue, delivery.pk), robust=True)
    return delivery


@transaction.atomic
def webhook_test_send(*, organization_id: int, endpoint_id: int, actor: Actor) -> WebhookDelivery:
    """A webhook.test event to one endpoint (enabled or not), sent after commit like any other delivery."""
    endpoint = endpoint_of(organization_id=organization_id, endpoint_id=endpoint_id)
    delivery = webhook_test_event_record(organization_id=organization_id, endpoint_id=endpoint_id)
    audit_record(
        actor=actor,
        action="webhook.test",
        organization_id=organization_id,
        target=f"WebhookEndpoint:{endpoint.pk}",
        detail={"event_id": delivery.event.event_id},
    )
    return delivery


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose time came more than a grace ago: their task was lost (a worker died, the broker
    forgot it). Sending them again is safe: an attempt is claimed before it is sent."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now - SWEEP_GRACE)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
