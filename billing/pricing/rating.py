"""Rating: usage quantities + pricing context -> charge lines. Pure: no database, no clock."""

from dataclasses import dataclass

from billing.money import token_cost_nano

BPS = 10_000
SERVICE_TIERS = ("default", "priority", "flex", "batch")


@dataclass(frozen=True, slots=True)
class Prices:
    """One model's list prices at one time (a price version, or an override of it)."""

    price_version_id: int | None
    input_price_micro_per_mtok: int
    cached_input_price_micro_per_mtok: int
    output_price_micro_per_mtok: int
    request_fee_nano: int = 0
    priority_factor_bps: int = 17_000
    flex_factor_bps: int = 5_000
    batch_factor_bps: int = 5_000


def service_tier_factor_bps(prices: Prices, service_tier: str) -> int:
    """The factor (basis points of list price) a service tier applies; ValueError for an unknown tier."""
    if service_tier == "default":
        return BPS
    if service_tier == "priority":
        return prices.priority_factor_bps
    if service_tier == "flex":
        return prices.flex_factor_bps
    if service_tier == "batch":
        return prices.batch_factor_bps
    raise ValueError(f"unknown service tier {service_tier!r}; use one of {', '.join(SERVICE_TIERS)}")


def max_charge_nano(*, prices: Prices, prompt_tokens: int, max_tokens: int, service_tier: str = "default") -> int:
    """The most a request can cost in credit: every prompt token uncached, every allowed output token produced.

    Quota, commitments and tier discounts can only lower the real charge, so they are ignored here; the
    service-tier factor is applied (a priority request may cost more than list price).
    """
    factor_bps = service_tier_factor_bps(prices, service_tier)
    list_nano = (
        token_cost_nano(prompt_tokens, prices.input_price_micro_per_mtok)
        + token_cost_nano(max_tokens, prices.output_price_micro_per_mtok)
        + prices.request_fee_nano
    )
    return -((-list_nano * factor_bps) // BPS)
