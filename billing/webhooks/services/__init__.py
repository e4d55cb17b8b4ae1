"""Writes of outbound webhooks: endpoints (endpoints.py), events and their deliveries (events.py, deliveries.py)."""

from billing.webhooks.services.deliveries import (
    webhook_deliveries_due,
    webhook_delivery_attempt,
    webhook_delivery_redeliver,
    webhook_test_send,
)
from billing.webhooks.services.endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_update,
)
from billing.webhooks.services.events import webhook_event_emit, webhook_keys_expiring_emit

__all__ = [
    "webhook_deliveries_due",
    "webhook_delivery_attempt",
    "webhook_delivery_redeliver",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_secret_rotate",
    "webhook_endpoint_update",
    "webhook_event_emit",
    "webhook_keys_expiring_emit",
    "webhook_test_send",
]
