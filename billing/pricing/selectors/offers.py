"""What a customer can buy (the plans and commitment offers staff offer) and what they hold now: their plan,
its included tokens left and rollover this period, their commitments' drawdown this month, and the next
renewal with its fee."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from billing.pricing.models import (
    LIVE_STATUSES,
    Commitment,
    CommitmentOffer,
    CommitmentStatus,
    CounterKind,
    PeriodCounter,
    Plan,
    PlanAllowance,
    Subscription,
    SubscriptionPeriod,
)
from billing.pricing.selectors.context import commitment_month


def plans_offered() -> QuerySet[Plan]:
    """Plans open to new subscribers, cheapest first, with their included tokens."""
    return Plan.objects.filter(is_active=True).prefetch_related(
        Prefetch("allowances", queryset=PlanAllowance.objects.select_related("model"))
    )


def offers_offered() -> QuerySet[CommitmentOffer]:
    """Commitment offers open to purchase."""
    return CommitmentOffer.objects.filter(is_active=True).select_related("model").order_by("name", "id")


@dataclass(frozen=True)
class QuotaLeft:
    scope_label: str
    limit_tokens: int  # included (prorated after a change) plus rollover
    used_tokens: int
    rollover_tokens: int

    @property
    def left_tokens(self) -> int:
        return max(self.limit_tokens - self.used_tokens, 0)


@dataclass(frozen=True)
class Drawdown:
    commitment: Commitment
    month_start: datetime
    month_end: datetime
    limit_tokens: int
    used_tokens: int

    @property
    def percent_used(self) -> int:
        return self.used_tokens * 100 // self.limit_tokens if self.limit_tokens else 0


@dataclass(frozen=True)
class PlanState:
    subscription: Subscription | None
    # The fee record of the plan in force (its fee paid for this period or the part of it since a change).
    current_period: SubscriptionPeriod | None
    quotas: list[QuotaLeft]
    commitments: list[Drawdown]

    @property
    def renews(self) -> bool:
        return self.subscription is not None and not self.subscription.cancel_at_period_end


def _label(scope: str) -> str:
    kind, _, name = scope.partition(":")
    return f"{kind} {name}"


def plan_state(*, organization_id: int, now: datetime) -> PlanState:
    subscription = (
        Subscription.objects.select_related("plan")
        .filter(organization_id=organization_id, status__in=LIVE_STATUSES)
        .first()
    )
    quotas: list[QuotaLeft] = []
    current = None
    if subscription is not None:
        current = (
            SubscriptionPeriod.objects.filter(
                subscription=subscription, period_start=subscription.current_period_start, superseded_at__isnull=True
            )
            .order_by("-starts_at", "-id")
            .first()
        )
        rows = PeriodCounter.objects.filter(
            organization_id=organization_id,
            kind=CounterKind.QUOTA,
            owner_id=subscription.pk,
            period_start=subscription.current_period_start,
        ).order_by("scope_key")
        quotas = [
            QuotaLeft(_label(row.scope_key), row.limit_tokens or 0, row.used_tokens, row.rollover_tokens)
            for row in rows
        ]
    return PlanState(
        subscription=subscription,
        current_period=current,
        quotas=quotas,
        commitments=_drawdowns(organization_id, now),
    )


def _drawdowns(organization_id: int, now: datetime) -> list[Drawdown]:
    active = list(
        Commitment.objects.select_related("model", "offer")
        .filter(organization_id=organization_id, status=CommitmentStatus.ACTIVE, ends_at__gt=now)
        .order_by("starts_at", "id")
    )
    # This month of each (its first month for one starting later), then all their counters in one query.
    months = {c.pk: commitment_month(c, max(now, c.starts_at))[1:] for c in active}
    counters = {
        (row.owner_id, row.period_start): row
        for row in PeriodCounter.objects.filter(
            organization_id=organization_id,
            kind=CounterKind.COMMITMENT,
            owner_id__in=list(months),
            period_start__in={start for start, _ in months.values()},
        )
    }
    found = []
    for commitment in active:
        start, end = months[commitment.pk]
        counter = counters.get((commitment.pk, start))
        used = counter.used_tokens if counter is not None else 0
        limit = counter.limit_tokens if counter is not None and counter.limit_tokens else commitment.monthly_tokens
        found.append(Drawdown(commitment, start, end, limit, used))
    return found
