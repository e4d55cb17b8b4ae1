"""Reads of the catalogue and prices."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from billing.pricing import rating
from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel, ModelStatus, PriceVersion


def price_version_at(*, model_slug: str, at: datetime) -> PriceVersion:
    """The price version of `model_slug` in effect at `at` (model loaded with it); ModelNotFound if none."""
    version = (
        PriceVersion.objects.select_related("model")
        .filter(model__slug=model_slug, effective_from__lte=at, cancelled_at__isnull=True)
        .order_by("-effective_from")
        .first()
    )
    if version is None:
        if AIModel.objects.filter(slug=model_slug).exists():
            raise ModelNotFound(f"The model '{model_slug}' has no price at {at.isoformat()}.", param="model")
        raise ModelNotFound(f"The model '{model_slug}' does not exist.", param="model")
    return version


def prices_of(version: PriceVersion) -> rating.Prices:
    return rating.Prices(
        price_version_id=version.pk,
        input_price_micro_per_mtok=version.input_price_micro_per_mtok,
        cached_input_price_micro_per_mtok=version.cached_input_price_micro_per_mtok,
        output_price_micro_per_mtok=version.output_price_micro_per_mtok,
        reasoning_price_micro_per_mtok=version.reasoning_price_micro_per_mtok,
        request_fee_nano=version.request_fee_nano,
        priority_factor_bps=version.priority_factor_bps,
        flex_factor_bps=version.flex_factor_bps,
        batch_factor_bps=version.batch_factor_bps,
        long_context_threshold_tokens=version.long_context_threshold_tokens,
        long_input_price_micro_per_mtok=version.long_input_price_micro_per_mtok,
        long_cached_input_price_micro_per_mtok=version.long_cached_input_price_micro_per_mtok,
        long_output_price_micro_per_mtok=version.long_output_price_micro_per_mtok,
    )


def price_versions_scheduled(*, model_slug: str | None = None, now: datetime) -> list[PriceVersion]:
    """Versions that have not taken effect yet (and are not cancelled), soonest first."""
    versions = PriceVersion.objects.select_related("model").filter(effective_from__gt=now, cancelled_at__isnull=True)
    if model_slug is not None:
        versions = versions.filter(model__slug=model_slug)
    return list(versions.order_by("effective_from", "id"))


@dataclass(frozen=True)
class CatalogEntry:
    """A callable model with the prices in effect at the time asked (for /v1/models and the pricing page)."""

    slug: str
    display_name: str
    provider: str
    group: str
    kind: str
    encoding: str
    context_window: int
    default_max_tokens: int
    max_output_tokens: int
    status: str
    sunset_at: datetime | None
    price_version_id: int
    input_price_micro_per_mtok: int
    cached_input_price_micro_per_mtok: int
    output_price_micro_per_mtok: int
    request_fee_nano: int
    currency: str
    effective_from: datetime


def catalog(*, at: datetime) -> list[CatalogEntry]:
    """Models callable at `at` (active, or deprecated but not yet sunset) that have a price then, by slug."""
    models = AIModel.objects.filter(Q(status=ModelStatus.ACTIVE) | Q(sunset_at__gt=at))
    versions = PriceVersion.objects.filter(
        model__in=models, effective_from__lte=at, cancelled_at__isnull=True
    ).select_related("model")
    current: dict[int, PriceVersion] = {}
    for version in versions:
        best = current.get(version.model_id)
        if best is None or version.effective_from > best.effective_from:
            current[version.model_id] = version
    entries = [
        CatalogEntry(
            slug=v.model.slug,
            display_name=v.model.display_name,
            provider=v.model.provider,
            group=v.model.group,
            kind=v.model.kind,
            encoding=v.model.encoding,
            context_window=v.model.context_window,
            default_max_tokens=v.model.default_max_tokens,
            max_output_tokens=v.model.max_output_tokens,
            status=v.model.status,
            sunset_at=v.model.sunset_at,
            price_version_id=v.pk,
            input_price_micro_per_mtok=v.input_price_micro_per_mtok,
            cached_input_price_micro_per_mtok=v.cached_input_price_micro_per_mtok,
            output_price_micro_per_mtok=v.output_price_micro_per_mtok,
            request_fee_nano=v.request_fee_nano,
            currency=v.currency,
            effective_from=v.effective_from,
        )
        for v in current.values()
    ]
    return sorted(entries, key=lambda e: e.slug)
