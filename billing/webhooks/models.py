"""Outbound webhooks: the customer's endpoints, the events that happened, and one delivery per (event, endpoint)
with every attempt at it logged."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class EventType(models.TextChoices):
    BALANCE_LOW = "balance.low", "Balance low"
    BUDGET_THRESHOLD_CROSSED = "budget.threshold_crossed", "Budget threshold crossed"
    BUDGET_EXCEEDED = "budget.exceeded", "Budget exceeded"
    TOP_UP_SUCCEEDED = "top_up.succeeded", "Top-up succeeded"
    TOP_UP_FAILED = "top_up.failed", "Top-up failed"
    AUTO_TOP_UP_FAILED = "auto_top_up.failed", "Automatic top-up failed"
    INVOICE_ISSUED = "invoice.issued", "Invoice issued"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed", "Invoice payment failed"
    API_KEY_EXPIRING = "api_key.expiring", "API key expiring"
    # Sent by "Send test event" to one endpoint only; never subscribed to.
    TEST = "webhook.test", "Test event"


# The types an endpoint can subscribe to.
SUBSCRIBABLE = tuple(value for value in EventType.values if value != EventType.TEST)
MAX_URL_LENGTH = 2000


class WebhookEndpoint(models.Model):
    """A URL of the customer's that receives the events it subscribes to, signed with its own secret."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=MAX_URL_LENGTH)
    description = models.CharField(max_length=200, blank=True, default="")
    # Kept readable (not hashed): every delivery is signed with it, and owners may reveal it again.
    secret = models.CharField(max_length=100)
    # A non-empty list of EventType values (SUBSCRIBABLE), sorted.
    event_types = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(url=""), name="webhook_endpoint_url_not_empty"),
            models.CheckConstraint(
                condition=Q(secret__startswith="whsec_"),  # noqa: S106 (a prefix, not a secret)
                name="webhook_endpoint_secret_format",
            ),
            models.CheckConstraint(condition=~Q(event_types=[]), name="webhook_endpoint_subscribes"),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="webhook_endpoint_org")]

    def __str__(self) -> str:
        return f"{self.url} ({self.organization_id})"

    @property
    def public_id(self) -> str:
        return f"we_{self.pk}"


class WebhookEvent(models.Model):
    """Something that happened to an organization, stored once per idempotency key, with the exact body every
    delivery of it sends (so each retry signs the same bytes)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=50, choices=EventType.choices)
    # The caller's key for what happened (e.g. "top_up.succeeded:42"): a second emit with it records nothing.
    idempotency_key = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(type__in=EventType.values), name="webhook_event_type_valid"),
            models.CheckConstraint(condition=~Q(idempotency_key=""), name="webhook_event_key_not_empty"),
            models.UniqueConstraint(fields=["organization", "idempotency_key"], name="webhook_event_once_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"

    @property
    def event_id(self) -> str:
        return f"evt_{self.public_id.hex}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # to be tried (again) at next_attempt_at
    SUCCEEDED = "succeeded", "Succeeded"  # the endpoint answered 2xx
    FAILED = "failed", "Failed"  # gave up: the retry window ended, or the endpoint was removed or disabled


class WebhookDelivery(models.Model):
    """One event for one endpoint: at most one row per pair, so an event reaches an endpoint once."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due (pending); while an attempt runs, the end of its lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts are retried (with backoff) until this time; a redelivery by hand starts a new window.
    retry_until = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status"),
            models.CheckConstraint(
                condition=Q(status=DeliveryStatus.PENDING, next_attempt_at__isnull=False)
                | ~Q(status=DeliveryStatus.PENDING),
                name="webhook_delivery_pending_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status=DeliveryStatus.SUCCEEDED, delivered_at__isnull=False)
                | ~Q(status=DeliveryStatus.SUCCEEDED),
                name="webhook_delivery_succeeded_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_pending_due"
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.event_id} to {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: what the endpoint answered (or why nothing was sent), and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="webhook_attempt_number_positive"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
