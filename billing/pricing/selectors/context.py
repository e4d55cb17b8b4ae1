"""The pricing context: everything rating needs about one organization calling one model at one time.

It is read with a handful of indexed queries and is safe to cache for a few seconds (the gateway does): the
period-to-date counters are not in it, they are claimed atomically at settle time (services.rating). A cached
context can lag a change by those seconds (a new override, a plan change); a claim is never wrong, because it
reads the counter row itself.
"""

import dataclasses
from datetime import datetime

from django.db.models import Q, QuerySet

from billing.pricing import periods, rating
from billing.pricing.models import (
    AIModel,
    Commitment,
    CommitmentStatus,
    PriceOverride,
    Subscription,
    SubscriptionStatus,
    TierSchedule,
)
from billing.pricing.selectors.catalog import price_version_at, prices_of
from billing.pricing.tiers import Tier

BPS = rating.BPS


def _scoped(queryset: QuerySet, model: AIModel) -> QuerySet:
    """Rows that apply to `model`: scoped to it, or to its group."""
    condition = Q(model=model)
    if model.group:
        condition |= Q(model__isnull=True, group=model.group)
    return queryset.filter(condition)


def _model_first(row: object) -> tuple[int, int]:
    """Drawdown and lock order: a model's own row before its group's, then by id."""
    return (0 if getattr(row, "model_id", None) else 1, int(row.pk))  # type: ignore[attr-defined]


def override_at(*, organization_id: int, model: AIModel, at: datetime) -> PriceOverride | None:
    """The organization's negotiated price for `model` at `at`: one for the model wins over one for its group."""
    overrides = _scoped(PriceOverride.objects.filter(organization_id=organization_id), model).filter(
        Q(effective_until__isnull=True) | Q(effective_until__gt=at), effective_from__lte=at
    )
    found = sorted(overrides, key=_model_first)
    return found[0] if found else None


def _discounted(price: int | None, discount_bps: int) -> int | None:
    # A discounted price is rounded down: a negotiated discount never costs the customer a fraction more.
    return None if price is None else price * (BPS - discount_bps) // BPS


def prices_apply_override(prices: rating.Prices, override: PriceOverride | None) -> rating.Prices:
    """The prices an organization pays: its override's absolute prices where it sets them, else the version's
    prices less the override's discount (long-context prices and the request fee get the discount too)."""
    if override is None:
        return prices
    d = override.discount_bps
    input_price = override.input_price_micro_per_mtok
    if input_price is None:
        input_price = prices.input_price_micro_per_mtok * (BPS - d) // BPS
    cached = override.cached_input_price_micro_per_mtok
    if cached is None:
        cached = min(prices.cached_input_price_micro_per_mtok * (BPS - d) // BPS, input_price)
    output = override.output_price_micro_per_mtok
    # A negotiated output price covers reasoning too (the override has no reasoning price of its own).
    reasoning = None if output is not None else _discounted(prices.reasoning_price_micro_per_mtok, d)
    if output is None:
        output = prices.output_price_micro_per_mtok * (BPS - d) // BPS
    return dataclasses.replace(
        prices,
        input_price_micro_per_mtok=input_price,
        cached_input_price_micro_per_mtok=cached,
        output_price_micro_per_mtok=output,
        reasoning_price_micro_per_mtok=reasoning,
        request_fee_nano=prices.request_fee_nano * (BPS - d) // BPS,
        long_input_price_micro_per_mtok=_discounted(prices.long_input_price_micro_per_mtok, d),
        long_cached_input_price_micro_per_mtok=_discounted(prices.long_cached_input_price_micro_per_mtok, d),
        long_output_price_micro_per_mtok=_discounted(prices.long_output_price_micro_per_mtok, d),
        override_id=override.pk,
    )


def subscription_at(*, organization_id: int, at: datetime) -> Subscription | None:
    """The organization's active subscription whose current period contains `at` (plan loaded), if any.

    A past-due subscription (renewal fee not collected) gives no quota or discount until it is paid.
    """
    return (
        Subscription.objects.select_related("plan")
        .filter(
            organization_id=organization_id,
            status=SubscriptionStatus.ACTIVE,
            current_period_start__lte=at,
            current_period_end__gt=at,
        )
        .first()
    )


def commitments_at(*, organization_id: int, model: AIModel, at: datetime) -> list[Commitment]:
    """Active commitments of the organization covering `model` at `at`, in drawdown (and lock) order."""
    found = _scoped(Commitment.objects.select_related("model"), model).filter(
        organization_id=organization_id, status=CommitmentStatus.ACTIVE, starts_at__lte=at, ends_at__gt=at
    )
    return sorted(found, key=_model_first)


def commitment_month(commitment: Commitment, at: datetime) -> tuple[int, datetime, datetime]:
    """(index, start, end) of the commitment month containing `at`."""
    start, end = periods.anchored_period(commitment.starts_at, 1, at)
    return periods.months_between(commitment.starts_at, start), start, end


def tier_schedule_at(*, model: AIModel, at: datetime) -> TierSchedule | None:
    """The tier schedule in effect for `model` at `at` (one for the model wins over one for its group)."""
    schedules = _scoped(TierSchedule.objects.select_related("model").prefetch_related("bands"), model).filter(
        Q(effective_until__isnull=True) | Q(effective_until__gt=at), effective_from__lte=at, cancelled_at__isnull=True
    )
    found = sorted(schedules, key=_model_first)
    return found[0] if found else None


def tier_plan_of(schedule: TierSchedule, at: datetime) -> rating.TierPlan:
    start, end = periods.calendar_month(at)
    return rating.TierPlan(
        schedule_id=schedule.pk,
        mode=schedule.mode,
        tiers=tuple(Tier(band.start_nano, band.factor_bps) for band in schedule.bands.all()),
        scope_key=schedule.scope_key,
        period_start=start,
        period_end=end,
    )


def context_build(
    *, organization_id: int, model: AIModel, prices: rating.Prices, currency: str, at: datetime
) -> rating.PricingContext:
    """The context for `model` priced at `prices` (a published version, or a draft for a preview)."""
    override = override_at(organization_id=organization_id, model=model, at=at)
    prices = prices_apply_override(prices, override)
    allowances: list[rating.Allowance] = []
    options: dict[str, object] = {}
    subscription = subscription_at(organization_id=organization_id, at=at)
    if subscription is not None:
        plan = subscription.plan
        options.update(
            subscription_id=subscription.pk,
            plan_discount_bps=plan.usage_discount_bps,
            requests_per_minute=plan.requests_per_minute,
            tokens_per_minute=plan.tokens_per_minute,
        )
        for allowance in sorted(_scoped(plan.allowances.select_related("model"), model), key=_model_first):
            allowances.append(
                rating.Allowance(
                    source=rating.QUOTA,
                    owner_id=subscription.pk,
                    scope_key=allowance.scope_key,
                    period_start=subscription.current_period_start,
                    period_end=subscription.current_period_end,
                    limit_tokens=allowance.included_tokens,
                )
            )
    reserved = 0
    for commitment in commitments_at(organization_id=organization_id, model=model, at=at):
        _, start, end = commitment_month(commitment, at)
        allowances.append(
            rating.Allowance(
                source=rating.COMMITMENT,
                owner_id=commitment.pk,
                scope_key=commitment.scope_key,
                period_start=start,
                period_end=end,
                limit_tokens=commitment.monthly_tokens,
            )
        )
        reserved += commitment.reserved_tokens_per_minute
    schedule = tier_schedule_at(model=model, at=at)
    return rating.PricingContext(
        organization_id=organization_id,
        model_slug=model.slug,
        model_group=model.group,
        currency=currency,
        prices=prices,
        reserved_tokens_per_minute=reserved,
        allowances=tuple(allowances),
        tier=tier_plan_of(schedule, at) if schedule is not None else None,
        **options,  # type: ignore[arg-type]
    )


def pricing_context_get(*, organization_id: int, model_slug: str, at: datetime) -> rating.PricingContext:
    """What rating needs for `organization_id` calling `model_slug` at `at`; ModelNotFound if it has no price."""
    version = price_version_at(model_slug=model_slug, at=at)
    return context_build(
        organization_id=organization_id,
        model=version.model,
        prices=prices_of(version),
        currency=version.currency,
        at=at,
    )
