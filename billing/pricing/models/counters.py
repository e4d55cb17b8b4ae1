"""Period-to-date counters that rating claims from, one row per organization, allowance and period.

- quota: a subscription's included tokens of one scope in one billing period (`owner_id`: the subscription);
- commitment: a commitment's tokens in one commitment month (`owner_id`: the commitment);
- tier: a tier schedule's volume (on-demand spend) for one organization in one calendar month.

Claims are single statements in billing.pricing.sql, made in the transaction that charges the usage, so a
claimed token is spent exactly when the charge lands. `used_tokens <= limit_tokens` is a CHECK, so no
interleaving of claims can ever hand out more than the period holds. When a period closes, claims stop
(`closed_at`) and what was left is recorded as expired (use-or-lose); a quota's rollover goes to the next period.
"""

from django.db import models
from django.db.models import F, Q


class CounterKind(models.TextChoices):
    QUOTA = "quota", "Plan quota"
    COMMITMENT = "commitment", "Commitment"
    TIER = "tier", "Tier volume"


class PeriodCounter(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=CounterKind.choices)
    owner_id = models.BigIntegerField()
    scope_key = models.CharField(max_length=210)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Quota and commitment: tokens the period holds (rollover included) and tokens claimed.
    limit_tokens = models.BigIntegerField(null=True, blank=True)
    used_tokens = models.BigIntegerField(default=0)
    # The part of limit_tokens carried over from the previous period (drawn first, being older).
    rollover_tokens = models.BigIntegerField(default=0)
    # What the latest claim granted: the claim statement returns it (it is computed from the row as it was).
    last_claim_tokens = models.BigIntegerField(default=0)
    # Tier: the period's volume (on-demand spend before tiers), and the true-up booked so far for it.
    volume_nano = models.BigIntegerField(default=0)
    trued_up_nano = models.BigIntegerField(default=0)
    trued_up_volume_nano = models.BigIntegerField(default=0)
    # Set when the period closed: no claims after it. expired_tokens: what was left and lost (use-or-lose).
    closed_at = models.DateTimeField(null=True, blank=True)
    expired_tokens = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["period_start", "id"]
        indexes = [models.Index(fields=["kind", "period_end"], name="counter_kind_end", condition=Q(closed_at=None))]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind", "owner_id", "scope_key", "period_start"], name="counter_unique_key"
            ),
            models.CheckConstraint(condition=Q(kind__in=CounterKind.values), name="counter_kind_valid"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="counter_period_order"),
            models.CheckConstraint(
                condition=(Q(kind=CounterKind.TIER) & Q(limit_tokens__isnull=True))
                | (~Q(kind=CounterKind.TIER) & Q(limit_tokens__gte=0)),
                name="counter_limit_for_allowances",
            ),
            # The invariant concurrent claims must keep: never more claimed than the period holds.
            models.CheckConstraint(
                condition=Q(limit_tokens__isnull=True) | Q(used_tokens__lte=F("limit_tokens")),
                name="counter_used_within_limit",
            ),
            models.CheckConstraint(
                condition=Q(used_tokens__gte=0, rollover_tokens__gte=0, last_claim_tokens__gte=0, volume_nano__gte=0),
                name="counter_amounts_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} counter {self.scope_key} from {self.period_start:%Y-%m-%d}"


class TierTrueUp(models.Model):
    """A period-end adjustment of a tier counter: F_mode(volume) - F_graduated(volume) - booked before."""

    counter = models.ForeignKey(PeriodCounter, on_delete=models.PROTECT, related_name="trueups")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    schedule = models.ForeignKey("pricing.TierSchedule", on_delete=models.PROTECT, related_name="trueups")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    volume_nano = models.BigIntegerField()
    # What real time charged (F_graduated(volume)), what the period costs (F_mode(volume)), and this adjustment.
    charged_nano = models.BigIntegerField()
    period_cost_nano = models.BigIntegerField()
    amount_nano = models.BigIntegerField()
    credit_grant_id = models.BigIntegerField(null=True, blank=True)
    debit_transaction_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["period_start", "id"]
        constraints = [
            models.UniqueConstraint(fields=["counter", "volume_nano"], name="trueup_once_per_volume"),
            models.CheckConstraint(condition=~Q(amount_nano=0), name="trueup_not_zero"),
        ]

    def __str__(self) -> str:
        return f"true-up of counter {self.counter_id} at volume {self.volume_nano}"
