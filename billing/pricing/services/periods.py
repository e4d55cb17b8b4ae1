"""Closing periods: commitment months (use-or-lose) and tier true-ups. Quota periods are closed by the
subscription services (renewal, change, end), which know the rollover.

A period is closed PRICING_PERIOD_CLOSE_GRACE_SECONDS after it ends, so requests that started inside it and
settle a little later still claim from it. A claim on a closed quota or commitment counter gets nothing (the
usage is paid on demand). Tier volume is never refused: a claim that lands after a true-up changes the
counter's volume, and the next run trues up the difference, so the period always ends at exactly
F_mode(volume) however late or concurrent its claims were.

Tier true-up of a counter with volume V (see billing.pricing.tiers): real time charged F_graduated(V) in
total; the period costs F_mode(V); the counter's true-up is F_mode(V) - F_graduated(V) (zero for graduated,
a credit for volume schedules), booked as the change since the last true-up. A credit is a "refund" grant to
the wallet; a charge (only possible if a schedule's factors rose, which the services refuse) a debit.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.ledger import services as ledger
from billing.pricing import tiers
from billing.pricing.models import CounterKind, PeriodCounter, TierSchedule, TierTrueUp
from billing.pricing.services import counters


def _cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.PRICING_PERIOD_CLOSE_GRACE_SECONDS)


def tier_trueup(*, counter_id: int, now: datetime | None = None) -> TierTrueUp | None:
    """True up one tier counter to its period's price; returns the adjustment booked (None if nothing was due)."""
    now = now or timezone.now()
    with transaction.atomic():
        # The counter first, then the wallet: the claims' lock order.
        counter = PeriodCounter.objects.select_for_update().get(pk=counter_id, kind=CounterKind.TIER)
        schedule = TierSchedule.objects.prefetch_related("bands").get(pk=counter.owner_id)
        bands = tuple(tiers.Tier(b.start_nano, b.factor_bps) for b in schedule.bands.all())
        volume = counter.volume_nano
        target = tiers.trueup_nano(volume, bands, schedule.mode)
        delta = target - counter.trued_up_nano
        trueup = None
        if delta:
            trueup = TierTrueUp(
                counter=counter,
                organization_id=counter.organization_id,
                schedule=schedule,
                period_start=counter.period_start,
                period_end=counter.period_end,
                volume_nano=volume,
                charged_nano=tiers.graduated_cost_nano(volume, bands),
                period_cost_nano=tiers.period_cost_nano(volume, bands, schedule.mode),
                amount_nano=delta,
            )
            key = f"tier-trueup:{counter.pk}:{volume}"
            reason = (
                f"{schedule.mode} volume tiers on {schedule.scope_label}, {counter.period_start:%Y-%m}: period true-up"
            )
            if delta < 0:
                grant = ledger.grant_create(
                    organization_id=counter.organization_id,
                    kind="refund",
                    amount_nano=-delta,
                    idempotency_key=key,
                    actor=None,
                    reason=reason,
                    source_ref=f"tier_schedule:{schedule.pk}",
                )
                trueup.credit_grant_id = grant.grant.pk
            else:
                debit = ledger.wallet_debit(
                    organization_id=counter.organization_id,
                    amount_nano=delta,
                    idempotency_key=key,
                    actor=None,
                    reason=reason,
                    category="tier_trueup",
                )
                trueup.debit_transaction_id = debit.pk
            trueup.save()
        counter.trued_up_nano = target
        counter.trued_up_volume_nano = volume
        counter.closed_at = counter.closed_at or now
        counter.save(update_fields=["trued_up_nano", "trued_up_volume_nano", "closed_at"])
        return trueup


def periods_close(*, now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """The closing task: commitment months that ended (the rest expires), and tier true-ups."""
    now = now or timezone.now()
    cutoff = _cutoff(now)
    closed = 0
    months = PeriodCounter.objects.filter(kind=CounterKind.COMMITMENT, period_end__lte=cutoff, closed_at__isnull=True)
    for counter_id in months.order_by("period_end", "id").values_list("id", flat=True)[:limit]:
        with transaction.atomic():
            rows = counters.locked(PeriodCounter.objects.filter(pk=counter_id, closed_at__isnull=True))
            for row in rows:
                counters.counter_close(row, now=now)
                closed += 1
    trued = 0
    due = PeriodCounter.objects.filter(kind=CounterKind.TIER, period_end__lte=cutoff).filter(
        Q(closed_at__isnull=True) | ~Q(volume_nano=F("trued_up_volume_nano"))
    )
    for counter_id in due.order_by("period_end", "id").values_list("id", flat=True)[:limit]:
        if tier_trueup(counter_id=counter_id, now=now) is not None:
            trued += 1
    return {"commitment_months_closed": closed, "tier_trueups": trued}
