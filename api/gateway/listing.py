"""GET /v1/models and /v1/models/{id}: the models a key may call, with the caller's prices.

Prices are the organization's own (its pricing context: list prices, or an override) in the currency's main
unit per million tokens as decimal strings, with the exact integers beside them.
"""

from datetime import datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api.gateway import upstreams
from api.gateway.catalog import model_not_found
from api.gateway.http import gateway_view, key_authenticate
from billing.metering.callers import AuthenticatedKey
from billing.pricing import rating, selectors
from billing.pricing.errors import ModelNotFound
from billing.pricing.selectors import CatalogEntry
from core.money import format_amount
from core.orm import orm_call


def _per_million(micro_per_mtok: int) -> str:
    """micro-units per million tokens as main units per million tokens: 2_500_000 -> "2.50"."""
    return format_amount(micro_per_mtok * 1000)


def model_object(entry: CatalogEntry, context: rating.PricingContext, served_by: str) -> dict[str, Any]:
    prices = context.prices
    return {
        "id": entry.slug,
        "object": "model",
        "created": int(entry.effective_from.timestamp()),
        "owned_by": entry.provider or "system",
        # Who answers the model: "demo" (the built-in demo model, whatever the model's name and price) or the model
        # server's host name (see upstreams.served_by).
        "served_by": served_by,
        "name": entry.display_name,
        "kind": entry.kind,
        "encoding": entry.encoding,
        "context_window": entry.context_window,
        "default_max_tokens": entry.default_max_tokens,
        "max_output_tokens": entry.max_output_tokens,
        "status": entry.status,
        "sunset_at": entry.sunset_at.isoformat() if entry.sunset_at else None,
        "pricing": {
            "currency": context.currency,
            "per": "1M tokens",
            "input": _per_million(prices.input_price_micro_per_mtok),
            "cached_input": _per_million(prices.cached_input_price_micro_per_mtok),
            "output": _per_million(prices.output_price_micro_per_mtok),
            "request_fee": format_amount(prices.request_fee_nano),
            "input_micro_per_mtok": prices.input_price_micro_per_mtok,
            "cached_input_micro_per_mtok": prices.cached_input_price_micro_per_mtok,
            "output_micro_per_mtok": prices.output_price_micro_per_mtok,
            "request_fee_nano": prices.request_fee_nano,
            "service_tier_factors_bps": {
                "default": rating.BPS,
                "priority": prices.priority_factor_bps,
                "flex": prices.flex_factor_bps,
            },
            "price_version_id": prices.price_version_id,
        },
    }


def _models(key: AuthenticatedKey, at: datetime, only: str | None = None) -> list[dict[str, Any]]:
    entries = [
        entry
        for entry in selectors.catalog(at=at)
        if (only is None or entry.slug == only) and key.allows_model(entry.slug)
    ]
    served_by = upstreams.served_by_models([entry.slug for entry in entries])
    objects = []
    for entry in entries:
        try:
            context = selectors.pricing_context_get(organization_id=key.organization_id, model_slug=entry.slug, at=at)
        except ModelNotFound:
            continue
        objects.append(model_object(entry, context, served_by[entry.slug]))
    return objects


@gateway_view("GET")
async def models_list(request: HttpRequest) -> JsonResponse:
    key = await key_authenticate(request, endpoint="models")
    data = await orm_call(_models, key, timezone.now())
    return JsonResponse({"object": "list", "data": data})


@gateway_view("GET")
async def model_retrieve(request: HttpRequest, model: str) -> JsonResponse:
    key = await key_authenticate(request, endpoint="models")
    data = await orm_call(_models, key, timezone.now(), model)
    if not data:
        raise model_not_found(model)
    return JsonResponse(data[0])
