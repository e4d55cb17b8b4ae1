"""Volume-tier schedules over a calendar month's on-demand spend on a model or group (maths: pricing.tiers).

A schedule runs from one month start to another (or on). It may be edited or cancelled until it takes effect;
after that it never changes, except that staff may end it at a later month start.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.pricing.models.scope import ScopedMixin, one_scope


class TierMode(models.TextChoices):
    GRADUATED = "graduated", "Graduated"
    VOLUME = "volume", "Volume"


class TierSchedule(ScopedMixin):
    name = models.CharField(max_length=200)
    mode = models.CharField(max_length=10, choices=TierMode.choices)
    effective_from = models.DateTimeField()
    effective_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-effective_from", "-id"]
        constraints = [
            one_scope("tierschedule"),
            models.CheckConstraint(condition=Q(mode__in=TierMode.values), name="tierschedule_mode_valid"),
            models.CheckConstraint(
                condition=Q(effective_until__isnull=True) | Q(effective_until__gt=F("effective_from")),
                name="tierschedule_range_order",
            ),
        ]

    def __str__(self) -> str:
        return f"tier schedule {self.pk} ({self.mode}) on {self.scope_label}"


class TierBand(models.Model):
    """One tier: from `start_nano` of period volume on, `factor_bps` of the price."""

    schedule = models.ForeignKey(TierSchedule, on_delete=models.CASCADE, related_name="bands")
    start_nano = models.BigIntegerField()
    factor_bps = models.PositiveIntegerField()

    class Meta:
        ordering = ["schedule_id", "start_nano"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "start_nano"], name="tierband_unique_start"),
            models.CheckConstraint(condition=Q(start_nano__gte=0), name="tierband_start_nonneg"),
            models.CheckConstraint(condition=Q(factor_bps__lte=10_000), name="tierband_factor_le_list"),
        ]

    def __str__(self) -> str:
        return f"tier from {self.start_nano} at {self.factor_bps} bps"
