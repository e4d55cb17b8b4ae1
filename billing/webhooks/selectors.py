"""Reads: an organization's endpoints, and an endpoint's deliveries with their attempts."""

from django.db.models import QuerySet

from billing.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from billing.webhooks.services.endpoints import endpoint_of

__all__ = ["endpoint_of", "webhook_deliveries", "webhook_delivery_attempts", "webhook_endpoints"]


def webhook_endpoints(*, organization_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization_id=organization_id).order_by("-created_at", "-pk")


def webhook_deliveries(*, organization_id: int, endpoint_id: int) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, with their events (NotFound for another organization's)."""
    endpoint_of(organization_id=organization_id, endpoint_id=endpoint_id)
    return (
        WebhookDelivery.objects.filter(endpoint_id=endpoint_id).select_related("event").order_by("-created_at", "-pk")
    )


def webhook_delivery_attempts(*, delivery_ids: list[int]) -> dict[int, list[WebhookAttempt]]:
    attempts: dict[int, list[WebhookAttempt]] = {pk: [] for pk in delivery_ids}
    for attempt in WebhookAttempt.objects.filter(delivery_id__in=delivery_ids).order_by("delivery_id", "number"):
        attempts[attempt.delivery_id].append(attempt)
    return attempts
