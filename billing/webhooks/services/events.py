"""Events: record what happened once, and a delivery to every endpoint subscribed to it, sent after commit."""

import json
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey
from accounts.selectors import apikey_ref
from billing.webhooks.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from core.errors import ApplicationError


def delivery_enqueue(delivery_id: int) -> None:
    from billing.webhooks.tasks import webhook_delivery_task

    webhook_delivery_task.delay(delivery_id)


def event_body(*, event_id: str, event_type: str, organization_id: int, created: datetime, data: dict[str, Any]) -> str:
    """The JSON every delivery of the event sends, byte for byte (stored, so retries sign the same bytes)."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(created.timestamp()),
            "organization_id": organization_id,
            "data": data,
        },
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
        sort_keys=True,
    )


def event_record(
    *, organization_id: int, event_type: str, data: dict[str, Any], idempotency_key: str, endpoints: list[int]
) -> tuple[WebhookEvent, list[WebhookDelivery]]:
    """Store the event (once per key) and one pending delivery per endpoint; send them after commit. A second call
    with the same key returns the stored event and creates nothing."""
    now = timezone.now()
    public_id = uuid.uuid4()
    body = event_body(
        event_id=f"evt_{public_id.hex}",
        event_type=event_type,
        organization_id=organization_id,
        created=now,
        data=data,
    )
    with transaction.atomic():
        event, created = WebhookEvent.objects.get_or_create(
            organization_id=organization_id,
            idempotency_key=idempotency_key,
            defaults={"type": event_type, "body": body, "public_id": public_id},
        )
        if not created:
            return event, []
        retry_until = now + timedelta(seconds=settings.WEBHOOKS_RETRY_WINDOW_SECONDS)
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event,
                endpoint_id=endpoint_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                retry_until=retry_until,
            )
            for endpoint_id in endpoints
        )
    for delivery in deliveries:
        transaction.on_commit(partial(delivery_enqueue, delivery.pk), robust=True)
    return event, deliveries


def webhook_event_emit(
    *, organization_id: int, event_type: str, data: dict[str, Any], idempotency_key: str
) -> WebhookEvent | None:
    """Record that `event_type` happened to the organization and deliver it, after the caller's transaction
    commits, to each enabled endpoint subscribed to it. One event per (organization, idempotency key): emitting
    again (a retried task, a second webhook for the same payment) delivers nothing more. Returns the event, or
    None when no endpoint listens (then nothing is stored)."""
    if event_type not in EventType.values or event_type == EventType.TEST:
        raise ValueError(f"not a webhook event type: {event_type!r}")
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValueError("the idempotency key must be 1 to 200 characters")
    endpoints = list(
        WebhookEndpoint.objects.filter(
            organization_id=organization_id, enabled=True, event_types__contains=[event_type]
        ).values_list("pk", flat=True)
    )
    if not endpoints:
        return None
    event, _ = event_record(
        organization_id=organization_id,
        event_type=event_type,
        data=data,
        idempotency_key=idempotency_key,
        endpoints=endpoints,
    )
    return event


def webhook_keys_expiring_emit(*, now: datetime | None = None) -> int:
    """api_key.expiring for every live key expiring within WEBHOOKS_KEY_EXPIRING_DAYS, once per key and expiry
    (a key whose expiry is moved is announced again). Rotated keys are left out: their expiry is the end of the
    overlap the owner chose. Only organizations with a subscribed endpoint are looked at. Returns the events
    emitted by this call."""
    now = now or timezone.now()
    listening = WebhookEndpoint.objects.filter(enabled=True, event_types__contains=[EventType.API_KEY_EXPIRING]).values(
        "organization_id"
    )
    keys = ApiKey.objects.filter(
        organization_id__in=listening,
        revoked_at__isnull=True,
        replaced_by__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=settings.WEBHOOKS_KEY_EXPIRING_DAYS),
    ).order_by("pk")
    emitted = 0
    for key in keys:
        assert key.expires_at is not None  # filtered above
        stamp = key.expires_at.isoformat()
        if WebhookEvent.objects.filter(
            organization_id=key.organization_id, idempotency_key=f"api_key.expiring:{key.pk}:{stamp}"
        ).exists():
            continue
        with transaction.atomic():
            event = webhook_event_emit(
                organization_id=key.organization_id,
                event_type=EventType.API_KEY_EXPIRING,
                data={"api_key": {**apikey_ref(key), "expires_at": stamp}},
                idempotency_key=f"api_key.expiring:{key.pk}:{stamp}",
            )
        emitted += event is not None
    return emitted


def webhook_test_event_record(*, organization_id: int, endpoint_id: int) -> WebhookDelivery:
    """A webhook.test event for one endpoint (whatever it subscribes to)."""
    _, deliveries = event_record(
        organization_id=organization_id,
        event_type=EventType.TEST,
        data={"message": "A test event sent from the webhooks page or API."},
        idempotency_key=f"webhook.test:{uuid.uuid4().hex}",
        endpoints=[endpoint_id],
    )
    if not deliveries:
        raise ApplicationError("the test event could not be recorded; try again", code="conflict")
    return deliveries[0]
