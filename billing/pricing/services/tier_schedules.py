"""Volume-tier schedules (maths: billing.pricing.tiers; claims: services.rating; true-up: services.periods).

A schedule runs over whole calendar months (UTC): it starts at a month start that has not begun, and may be
edited or cancelled until then; once in effect its tiers never change (the marginal charges of a period
must all come from one function), but it may be ended at a later month start. One schedule at a time per
model or group.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.services import audit_record
from billing.pricing import periods, tiers
from billing.pricing.errors import PriceVersionLocked, PricingConflict, PricingNotFound
from billing.pricing.models import AIModel, TierBand, TierMode, TierSchedule
from billing.pricing.services import validation
from billing.pricing.services.catalog import _full_clean, _user
from billing.pricing.services.scope import scope_resolve
from core.errors import ApplicationError


def _bands_check(bands: list[tuple[int, int]]) -> list[tiers.Tier]:
    if not isinstance(bands, list) or not bands:
        raise ApplicationError("A schedule needs at least one tier.", param="tiers", code="invalid_value")
    if len(bands) > 50:
        raise ApplicationError("A schedule has at most 50 tiers.", param="tiers", code="invalid_value")
    result = []
    for index, (start, factor) in enumerate(bands):
        validation.amount(start, param=f"tiers[{index}].start_nano")
        validation.bps(factor, param=f"tiers[{index}].factor_bps")
        result.append(tiers.Tier(start, factor))
    try:
        tiers.tiers_check(tuple(result))
    except ValueError as exc:
        raise ApplicationError(f"{exc}.", param="tiers", code="tiers_out_of_order") from exc
    return result


def _mode_check(mode: str) -> str:
    if mode not in TierMode.values:
        raise ApplicationError("mode must be graduated or volume.", param="mode", code="invalid_value")
    return mode


def _bands_create(schedule: TierSchedule, bands: list[tiers.Tier]) -> None:
    TierBand.objects.bulk_create(
        [TierBand(schedule=schedule, start_nano=b.start_nano, factor_bps=b.factor_bps) for b in bands]
    )


def _month_start_check(moment: datetime, *, param: str, now: datetime) -> datetime:
    validation.moment(moment, param=param)
    if not periods.is_month_start(moment):
        raise ApplicationError(
            f"{param} must be the first instant of a month (UTC), e.g. 2026-05-01T00:00:00Z.",
            param=param,
            code="invalid_value",
        )
    if moment <= now:
        raise ApplicationError(f"{param} must be a month that has not begun.", param=param, code="invalid_value")
    return moment


def _overlap_check(schedule: TierSchedule) -> None:
    others = TierSchedule.objects.filter(model=schedule.model, group=schedule.group, cancelled_at__isnull=True).exclude(
        pk=schedule.pk
    )
    others = others.filter(Q(effective_until__isnull=True) | Q(effective_until__gt=schedule.effective_from))
    if schedule.effective_until is not None:
        others = others.filter(effective_from__lt=schedule.effective_until)
    if others.exists():
        raise PricingConflict(
            f"Another tier schedule covers {schedule.scope_label} for part of that time; end or cancel it first.",
            param="effective_from",
        )


def _lock_scope(model: AIModel | None, group: str) -> None:
    """Schedules of one scope are changed one at a time: lock the model row (or every model of the group)."""
    models = AIModel.objects.filter(pk=model.pk) if model is not None else AIModel.objects.filter(group=group)
    list(models.order_by("id").select_for_update().values_list("id", flat=True))


def _detail(schedule: TierSchedule) -> dict[str, Any]:
    return {
        "scope": schedule.scope_key,
        "mode": schedule.mode,
        "effective_from": schedule.effective_from.isoformat(),
        "effective_until": schedule.effective_until.isoformat() if schedule.effective_until else None,
        "tiers": [[b.start_nano, b.factor_bps] for b in schedule.bands.all()],
    }


def _snapshot(schedule: TierSchedule) -> dict[str, Any]:
    """A schedule's terms for an audit entry's before / after."""
    return {"name": schedule.name, **_detail(schedule)}


def _audit(
    schedule: TierSchedule, action: str, *, actor: Any, before: dict[str, Any] | None, after: dict[str, Any]
) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=f"TierSchedule:{schedule.pk}",
        target_label=f"volume tiers #{schedule.pk} {schedule.name} on {schedule.scope_key}",
        model_slug=schedule.model.slug if schedule.model else "",
        detail=_detail(schedule),
        before=before,
        after=after,
    )


@transaction.atomic
def tier_schedule_create(
    *,
    name: str,
    mode: str,
    tiers: list[tuple[int, int]],
    effective_from: datetime,
    effective_until: datetime | None = None,
    model: str | None = None,
    group: str | None = None,
    actor: Any = None,
    now: datetime | None = None,
) -> TierSchedule:
    now = now or timezone.now()
    _mode_check(mode)
    bands = _bands_check(tiers)
    _month_start_check(effective_from, param="effective_from", now=now)
    if effective_until is not None:
        _month_start_check(effective_until, param="effective_until", now=now)
        if effective_until <= effective_from:
            raise ApplicationError(
                "effective_until must be after effective_from.", param="effective_until", code="invalid_value"
            )
    scope_model, scope_group = scope_resolve(model_slug=model, group=group)
    _lock_scope(scope_model, scope_group)
    schedule = TierSchedule(
        name=name,
        mode=mode,
        model=scope_model,
        group=scope_group,
        effective_from=effective_from,
        effective_until=effective_until,
        created_by=_user(actor),
    )
    _full_clean(schedule)
    _overlap_check(schedule)
    schedule.save()
    _bands_create(schedule, bands)
    _audit(schedule, "pricing.tier_schedule.create", actor=actor, before=None, after=_snapshot(schedule))
    return schedule


def _locked_schedule(schedule_id: int) -> TierSchedule:
    schedule = TierSchedule.objects.select_related("model").filter(pk=schedule_id, cancelled_at__isnull=True).first()
    if schedule is None:
        raise PricingNotFound(f"No tier schedule {schedule_id}.", param="tier_schedule")
    _lock_scope(schedule.model, schedule.group)
    return schedule


@transaction.atomic
def tier_schedule_update(
    *,
    schedule_id: int,
    actor: Any = None,
    now: datetime | None = None,
    tiers: list[tuple[int, int]] | None = None,
    **fields: Any,
) -> TierSchedule:
    """Edit a schedule that has not taken effect; one in effect may only get (or move) a later end."""
    now = now or timezone.now()
    schedule = _locked_schedule(schedule_id)
    before = _snapshot(schedule)
    started = schedule.effective_from <= now
    if started and (tiers is not None or set(fields) - {"effective_until"}):
        raise PriceVersionLocked(
            f"Tier schedule {schedule_id} is in effect: its tiers never change. End it at a coming month start and "
            "create a new one from there."
        )
    if "effective_until" in fields:
        until = fields["effective_until"]
        if until is not None:
            _month_start_check(until, param="effective_until", now=now)
        elif started and schedule.effective_until is not None and schedule.effective_until <= now:
            raise PricingConflict("This schedule has ended; create a new one.", param="effective_until")
        schedule.effective_until = until
    if "effective_from" in fields:
        schedule.effective_from = _month_start_check(fields["effective_from"], param="effective_from", now=now)
    if "mode" in fields:
        schedule.mode = _mode_check(fields["mode"])
    if "name" in fields:
        schedule.name = validation.text(fields["name"], param="name", max_length=200, required=True)
    _full_clean(schedule)
    _overlap_check(schedule)
    schedule.save()
    if tiers is not None:
        bands = _bands_check(tiers)
        schedule.bands.all().delete()
        _bands_create(schedule, bands)
    _audit(schedule, "pricing.tier_schedule.update", actor=actor, before=before, after=_snapshot(schedule))
    return schedule


@transaction.atomic
def tier_schedule_cancel(*, schedule_id: int, actor: Any = None, now: datetime | None = None) -> TierSchedule:
    """Cancel a schedule before it takes effect."""
    now = now or timezone.now()
    schedule = _locked_schedule(schedule_id)
    if schedule.effective_from <= now:
        raise PriceVersionLocked(f"Tier schedule {schedule_id} is in effect; end it at a coming month start instead.")
    schedule.cancelled_at = now
    schedule.save(update_fields=["cancelled_at"])
    _audit(
        schedule,
        "pricing.tier_schedule.cancel",
        actor=actor,
        before={"status": "scheduled"},
        after={"status": "cancelled", "cancelled_at": now},
    )
    return schedule
