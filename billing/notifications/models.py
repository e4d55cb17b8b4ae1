"""What each organization wants to be told about, and the notices already sent (one per kind per day)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.money import MAX_AMOUNT_NANO, NANO_PER_UNIT

DEFAULT_LOW_BALANCE_THRESHOLD_NANO = 5 * NANO_PER_UNIT
DEFAULT_EXPIRY_WINDOW_DAYS = 7
MAX_EXPIRY_WINDOW_DAYS = 90


class NoticeKind(models.TextChoices):
    LOW_BALANCE = "low_balance", "Low balance"
    CREDIT_EXPIRING = "credit_expiring", "Credit about to expire"


class NotificationSettings(models.Model):
    """An organization's thresholds. Organizations without a row use the defaults above."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="notification_settings"
    )
    low_balance_enabled = models.BooleanField(default=True)
    # A notice goes out while available credit is below this.
    low_balance_threshold_nano = models.BigIntegerField(default=DEFAULT_LOW_BALANCE_THRESHOLD_NANO)
    credit_expiring_enabled = models.BooleanField(default=True)
    # A notice goes out while some credit expires within this many days.
    credit_expiring_days = models.PositiveSmallIntegerField(default=DEFAULT_EXPIRY_WINDOW_DAYS)
    # Off: notices show on the dashboard only.
    email_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "notification settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(low_balance_threshold_nano__gt=0, low_balance_threshold_nano__lte=MAX_AMOUNT_NANO),
                name="notification_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(credit_expiring_days__gte=1, credit_expiring_days__lte=MAX_EXPIRY_WINDOW_DAYS),
                name="notification_expiry_days_range",
            ),
        ]

    def __str__(self) -> str:
        return f"notification settings of {self.organization_id}"


class Notice(models.Model):
    """A notice that was due for an organization. The unique dedupe key makes each one happen once: a second
    check on the same day finds the row and sends nothing."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=20, choices=NoticeKind.choices)
    # "<kind>:<UTC date>": at most one notice of a kind per organization per day.
    dedupe_key = models.CharField(max_length=100)
    # The figures the notice reported (amounts in nano-units), for the email and for support.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the email is claimed for sending (cleared again if sending fails, so a later check retries).
    emailed_at = models.DateTimeField(null=True, blank=True)
    recipients = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=NoticeKind.values), name="notice_kind_valid"),
            models.CheckConstraint(condition=~Q(dedupe_key=""), name="notice_dedupe_key_not_empty"),
            models.UniqueConstraint(fields=["organization", "dedupe_key"], name="notice_once_per_key"),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="notice_org_created")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.organization_id} ({self.dedupe_key})"
