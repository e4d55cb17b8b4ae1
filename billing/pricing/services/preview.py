"""Preview: what hypothetical usage would cost an organization now, and under a draft price.

The draft is either a version of the model that has not taken effect (scheduled) or unsaved prices (any
field left out keeps the current version's). Both sides are rated by the pure `rating.rate` in the
organization's real context (override, plan, commitments, tiers) from its current period-to-date counters,
read without claiming anything: the usages are applied one after another to a copy of that state. Nothing is
written.
"""

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from billing.pricing import rating, selectors
from billing.pricing.errors import PricingNotFound
from billing.pricing.models import PeriodCounter, PriceVersion
from billing.pricing.services.catalog import PRICE_FIELDS, _validate_prices
from billing.usage.models import UsageRecord
from core.errors import ApplicationError

MAX_USAGES = 1_000
MAX_WINDOW_RECORDS = 20_000
MAX_WINDOW = timedelta(days=93)


@dataclass(frozen=True)
class PreviewRow:
    usage: rating.Usage
    current: rating.Rating
    draft: rating.Rating | None


@dataclass(frozen=True)
class Preview:
    organization_id: int
    model_slug: str
    at: datetime
    current: rating.PricingContext
    draft: rating.PricingContext | None
    rows: list[PreviewRow]
    current_total_nano: int
    draft_total_nano: int | None
    recorded_total_nano: int | None = None


class _State:
    """Period counters as they stand, to be spent by the previewed usages one after another."""

    def __init__(self, context: rating.PricingContext):
        self.left: dict[tuple[str, int, str, datetime], int] = {}
        for allowance in context.allowances:
            key = (allowance.source, allowance.owner_id, allowance.scope_key, allowance.period_start)
            row = PeriodCounter.objects.filter(
                organization_id=context.organization_id,
                kind=allowance.source,
                owner_id=allowance.owner_id,
                scope_key=allowance.scope_key,
                period_start=allowance.period_start,
            ).first()
            if row is None:
                self.left[key] = allowance.limit_tokens
            else:
                self.left[key] = 0 if row.closed_at else (row.limit_tokens or 0) - row.used_tokens
        self.volume = 0
        if context.tier is not None:
            row = PeriodCounter.objects.filter(
                organization_id=context.organization_id,
                kind="tier",
                owner_id=context.tier.schedule_id,
                scope_key=context.tier.scope_key,
                period_start=context.tier.period_start,
            ).first()
            self.volume = row.volume_nano if row else 0

    def copy(self) -> "_State":
        clone = object.__new__(_State)
        clone.left, clone.volume = dict(self.left), self.volume
        return clone

    def rate(self, usage: rating.Usage, context: rating.PricingContext) -> rating.Rating:
        want, granted = usage.total_tokens, []
        for allowance in context.allowances:
            key = (allowance.source, allowance.owner_id, allowance.scope_key, allowance.period_start)
            got = min(want, max(self.left.get(key, 0), 0))
            self.left[key] = self.left.get(key, 0) - got
            granted.append(got)
            want -= got
        state = rating.PeriodState(granted_tokens=tuple(granted))
        volume = rating.tier_volume_nano(usage=usage, context=context, state=state)
        state = dataclasses.replace(state, tier_volume_before_nano=self.volume)
        self.volume += volume
        return rating.rate(usage=usage, context=context, state=state)


def _draft_prices(current: PriceVersion, draft: dict[str, Any]) -> rating.Prices:
    unknown = set(draft) - set(PRICE_FIELDS)
    if unknown:
        raise ApplicationError(f"Unknown draft field {sorted(unknown)[0]}.", param="draft", code="invalid_value")
    values = {field: getattr(current, field) for field in PRICE_FIELDS} | draft
    _validate_prices(values)
    base = selectors.prices_of(current)
    return dataclasses.replace(
        base,
        price_version_id=None,
        **{k: v for k, v in values.items() if k not in ("currency", "note")},
    )


def window_usages(
    *, organization_id: int, model_slug: str, since: datetime, until: datetime
) -> tuple[list[rating.Usage], int]:
    """The organization's recorded usage of the model in [since, until), and what it was charged."""
    if until <= since or until - since > MAX_WINDOW:
        raise ApplicationError("The usage window must run forwards and span at most 93 days.", param="until")
    records = UsageRecord.objects.filter(
        organization_id=organization_id, model__slug=model_slug, created_at__gte=since, created_at__lt=until
    ).order_by("created_at", "id")
    rows = list(
        records.values_list("input_tokens", "cached_input_tokens", "output_tokens", "service_tier", "charge_nano")[
            : MAX_WINDOW_RECORDS + 1
        ]
    )
    if len(rows) > MAX_WINDOW_RECORDS:
        raise ApplicationError(
            f"More than {MAX_WINDOW_RECORDS} usage records in that window; choose a shorter one.", param="since"
        )
    usages = [
        rating.Usage(model_slug, i, c, o, tier if tier in rating.SERVICE_TIERS else "default")
        for i, c, o, tier, _ in rows
    ]
    return usages, sum(row[4] for row in rows)


def pricing_preview(
    *,
    organization_id: int,
    model_slug: str,
    usages: list[rating.Usage],
    at: datetime | None = None,
    draft: dict[str, Any] | None = None,
    price_version_id: int | None = None,
    recorded_total_nano: int | None = None,
) -> Preview:
    """Rate `usages` for the organization at `at` (now) with current prices, and with the draft if one is given."""
    at = at or timezone.now()
    if len(usages) > MAX_USAGES and recorded_total_nano is None:
        raise ApplicationError(f"At most {MAX_USAGES} usages per preview.", param="usages")
    if draft is not None and price_version_id is not None:
        raise ApplicationError("Give either draft prices or a price_version_id, not both.", param="draft")
    current_version = selectors.price_version_at(model_slug=model_slug, at=at)
    model = current_version.model
    current = selectors.context_build(
        organization_id=organization_id,
        model=model,
        prices=selectors.prices_of(current_version),
        currency=current_version.currency,
        at=at,
    )
    draft_context = None
    if price_version_id is not None:
        version = PriceVersion.objects.filter(pk=price_version_id, model=model).first()
        if version is None:
            raise PricingNotFound(
                f"Model '{model_slug}' has no price version {price_version_id}.", param="price_version_id"
            )
        prices = selectors.prices_of(version)
    elif draft is not None:
        prices = _draft_prices(current_version, draft)
    if price_version_id is not None or draft is not None:
        draft_context = selectors.context_build(
            organization_id=organization_id, model=model, prices=prices, currency=current.currency, at=at
        )
    for usage in usages:
        if usage.model_slug != model_slug:
            raise ApplicationError("Every usage of a preview must be of the previewed model.", param="usages")
        try:
            rating.service_tier_factor_bps(current.prices, usage.service_tier)
        except ValueError as exc:
            raise ApplicationError(str(exc), param="service_tier") from exc
    state = _State(current)
    draft_state = state.copy()
    rows = []
    for usage in usages:
        try:
            rated = state.rate(usage, current)
            drafted = draft_state.rate(usage, draft_context) if draft_context is not None else None
        except ValueError as exc:
            raise ApplicationError(str(exc), param="usages") from exc
        rows.append(PreviewRow(usage, rated, drafted))
    return Preview(
        organization_id=organization_id,
        model_slug=model_slug,
        at=at,
        current=current,
        draft=draft_context,
        rows=rows,
        current_total_nano=sum(row.current.credit_nano for row in rows),
        draft_total_nano=sum(row.draft.credit_nano for row in rows if row.draft) if draft_context else None,
        recorded_total_nano=recorded_total_nano,
    )
