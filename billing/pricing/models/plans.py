"""Plans (subscriptions): a fee per month or year, included tokens per model or group (or included credit), a
discount on usage beyond them, a rate-limit class, and capped rollover of unused included tokens.

A plan's money terms (fee, interval, included tokens and credit, discount) are what its subscribers signed up
for: once a plan has subscribers the services refuse to change them (make a new plan and retire the old one).
`SubscriptionPeriod` rows are the fee history invoices are built from: one per period start, renewal and
mid-period change, with the fee charged and the proration credit, never edited except to mark a row superseded.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.pricing.models.scope import ScopedMixin, one_scope


class PlanInterval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Annual"


class Plan(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True, default="")
    interval = models.CharField(max_length=5, choices=PlanInterval.choices, default=PlanInterval.MONTH)
    fee_nano = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    # Credit included each period, granted as a "plan_allowance" grant that expires at the period's end.
    included_credit_nano = models.BigIntegerField(default=0)
    # Discount on usage beyond the included tokens, in basis points of the list price.
    usage_discount_bps = models.PositiveIntegerField(default=0)
    # Rate-limit class for the gateway (None: the product's defaults).
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # Offered to new subscribers; a retired plan keeps serving the ones it has.
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["fee_nano", "slug"]
        constraints = [
            models.CheckConstraint(condition=~Q(slug=""), name="plan_slug_not_empty"),
            models.CheckConstraint(condition=Q(interval__in=PlanInterval.values), name="plan_interval_valid"),
            models.CheckConstraint(condition=Q(fee_nano__gte=0), name="plan_fee_nonneg"),
            models.CheckConstraint(condition=Q(included_credit_nano__gte=0), name="plan_included_credit_nonneg"),
            models.CheckConstraint(condition=Q(usage_discount_bps__lte=10_000), name="plan_discount_le_100pct"),
            models.CheckConstraint(
                condition=Q(requests_per_minute__isnull=True) | Q(requests_per_minute__gt=0), name="plan_rpm_positive"
            ),
            models.CheckConstraint(
                condition=Q(tokens_per_minute__isnull=True) | Q(tokens_per_minute__gt=0), name="plan_tpm_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class PlanAllowance(ScopedMixin):
    """Tokens of one model or group included in each period of a plan, and how many unused ones roll over."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="allowances")
    included_tokens = models.BigIntegerField()
    # At most this many unused tokens (included or rolled over) carry into the next period; 0: use-or-lose.
    rollover_cap_tokens = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["plan_id", "id"]
        constraints = [
            one_scope("planallowance"),
            models.CheckConstraint(condition=Q(included_tokens__gt=0), name="planallowance_included_positive"),
            models.CheckConstraint(condition=Q(rollover_cap_tokens__gte=0), name="planallowance_rollover_nonneg"),
            models.UniqueConstraint(
                fields=["plan", "model"], condition=Q(model__isnull=False), name="planallowance_unique_model"
            ),
            models.UniqueConstraint(
                fields=["plan", "group"], condition=~Q(group=""), name="planallowance_unique_group"
            ),
        ]


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    # The renewal fee could not be collected: no quota or discount until it is; retried by the renewal task.
    PAST_DUE = "past_due", "Past due"
    ENDED = "ended", "Ended"


LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


class Subscription(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    # Periods run from the anchor in steps of the plan's interval (a month from Jan 31 ends Feb 28, then Mar 31).
    billing_anchor = models.DateTimeField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")), name="subscription_period_order"
            ),
            models.CheckConstraint(
                condition=Q(status=SubscriptionStatus.ENDED, ended_at__isnull=False)
                | (~Q(status=SubscriptionStatus.ENDED) & Q(ended_at__isnull=True)),
                name="subscription_ended_has_time",
            ),
            # One live subscription per organization.
            models.UniqueConstraint(
                fields=["organization"], condition=Q(status__in=LIVE_STATUSES), name="subscription_one_live_per_org"
            ),
        ]

    def __str__(self) -> str:
        return f"subscription {self.pk} of organization {self.organization_id} to {self.plan_id}"


class PeriodKind(models.TextChoices):
    START = "start", "Subscribed"
    RENEWAL = "renewal", "Renewed"
    CHANGE = "change", "Plan changed"


class SubscriptionPeriod(models.Model):
    """One plan in force over (part of) a billing period, with its fee: what invoices will list."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="periods")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=PeriodKind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # When this plan took effect: the period start, or the time of a mid-period change.
    starts_at = models.DateTimeField()
    # The plan's fee for a whole period, and the fee charged for this part of it (prorated for a change).
    plan_fee_nano = models.BigIntegerField()
    fee_nano = models.BigIntegerField()
    # For a change: the unused part of the previous plan's fee, credited against `fee_nano`.
    credit_nano = models.BigIntegerField(default=0)
    # The ledger's records of the money: the debit of fee - credit, or the grant returning credit - fee.
    debit_transaction_id = models.BigIntegerField(null=True, blank=True)
    credit_grant_id = models.BigIntegerField(null=True, blank=True)
    allowance_grant_id = models.BigIntegerField(null=True, blank=True)
    # Set when credit did not cover the fee and the organization's billing period closed: the fee is a line of that
    # invoice, and is paid (debit_transaction_id set) when the invoice is paid.
    invoiced_at = models.DateTimeField(null=True, blank=True)
    # Set when a later change replaced this plan within the period.
    superseded_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription_id", "starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=PeriodKind.values), name="subperiod_kind_valid"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="subperiod_order"),
            models.CheckConstraint(
                condition=Q(starts_at__gte=F("period_start"), starts_at__lt=F("period_end")),
                name="subperiod_starts_within",
            ),
            models.CheckConstraint(
                condition=Q(plan_fee_nano__gte=0, fee_nano__gte=0, credit_nano__gte=0),
                name="subperiod_amounts_nonneg",
            ),
            models.CheckConstraint(condition=Q(fee_nano__lte=F("plan_fee_nano")), name="subperiod_fee_le_plan_fee"),
            # A period is started or renewed once; the renewal task relies on it to be idempotent.
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=Q(kind__in=[PeriodKind.START, PeriodKind.RENEWAL]),
                name="subperiod_one_start_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of subscription {self.subscription_id} from {self.starts_at:%Y-%m-%d}"
