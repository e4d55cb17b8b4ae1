"""Opening and closing the period counters of quotas and commitments (not on the hot path).

Every function here takes counter rows in the claims' lock order (see billing.pricing.sql): quota counters of
one model before those of groups, before commitment counters, and always before any wallet work.
"""

from datetime import datetime

from django.db.models import Case, F, IntegerField, QuerySet, Value, When

from billing.pricing.models import CounterKind, PeriodCounter


def locked(counters: QuerySet[PeriodCounter]) -> list[PeriodCounter]:
    """The rows, locked, in lock order."""
    ordered = counters.annotate(
        group_last=Case(
            When(scope_key__startswith="model:", then=Value(0)), default=Value(1), output_field=IntegerField()
        )
    ).order_by("group_last", "owner_id", "scope_key", "id")
    return list(ordered.select_for_update(of=("self",)))


def counter_open(
    *,
    organization_id: int,
    kind: str,
    owner_id: int,
    scope_key: str,
    period_start: datetime,
    period_end: datetime,
    limit_tokens: int,
    rollover_tokens: int = 0,
) -> PeriodCounter:
    """The period's counter, created with `limit_tokens` if missing (a claim may have created it first)."""
    counter, created = PeriodCounter.objects.get_or_create(
        organization_id=organization_id,
        kind=kind,
        owner_id=owner_id,
        scope_key=scope_key,
        period_start=period_start,
        defaults={"period_end": period_end, "limit_tokens": limit_tokens, "rollover_tokens": rollover_tokens},
    )
    if not created and rollover_tokens and counter.closed_at is None:
        # A claim opened it first with the plain limit: add the rollover now.
        PeriodCounter.objects.filter(pk=counter.pk).update(
            limit_tokens=F("limit_tokens") + rollover_tokens, rollover_tokens=F("rollover_tokens") + rollover_tokens
        )
        counter.refresh_from_db()
    return counter


def counter_close(counter: PeriodCounter, *, now: datetime, rollover_cap_tokens: int = 0) -> int:
    """Close a locked counter: no more claims, the rest expires (use-or-lose) except up to the cap, which is
    returned for the next period."""
    assert counter.kind != CounterKind.TIER
    if counter.closed_at is not None:
        return 0
    unused = (counter.limit_tokens or 0) - counter.used_tokens
    rollover = min(unused, rollover_cap_tokens)
    counter.closed_at = now
    counter.expired_tokens = unused - rollover
    counter.save(update_fields=["closed_at", "expired_tokens"])
    return rollover
