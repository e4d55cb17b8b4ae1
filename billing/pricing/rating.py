"""Rating: usage quantities + pricing context -> charge lines. Pure: no database, no clock.

Rounding rule: each charge line is rounded up to a whole nano-unit (a billionth of the currency), once, from
exact integer arithmetic (tokens x price x service-tier factor). A line is never rounded down, so the provider
never loses money to truncation, and the customer never pays more than one nano-unit per line for rounding.
Invoices round their totals to the currency's minor unit once, at the end (billing.money.round_to_minor).
"""

from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True)
class PricingContext:
    """Everything rating needs to know about one organization calling one model at one time, except the
    period-to-date counters (PeriodState). Built by billing.pricing.selectors.pricing_context_get; safe to cache
    for a few seconds."""

    organization_id: int
    model_slug: str
    model_group: str
    currency: str
    prices: Prices
    # Rate limits for the gateway (None: the product's defaults): from the organization's plan, and throughput
    # reserved by its commitments on this model or group (tokens per minute guaranteed to it).
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    reserved_tokens_per_minute: int = 0

    @property
    def needs_period_state(self) -> bool:
        """Whether rating depends on period-to-date usage (quotas, commitments, tiers): if not, rating needs no
        database at all and the gateway settles in a single round trip."""
        return False


@dataclass(frozen=True, slots=True)
class PeriodState:
    """Period-to-date usage that rating depends on, as claimed for this usage (see services.rating)."""


@dataclass(frozen=True, slots=True)
class Usage:
    model_slug: str
    input_tokens: int
    cached_input_tokens: int = 0
    output_tokens: int = 0
    service_tier: str = "default"
    requests: int = 1


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One line of a charge: `tokens` of one kind paid from one source at one rate."""

    kind: str  # "input" | "cached_input" | "output" | "request_fee"
    source: str  # "credit" (the wallet) | "quota" (a plan's included tokens) | "commitment"
    tokens: int
    rate_micro_per_mtok: int  # the list rate of this kind (before the service-tier factor)
    factor_bps: int  # the service-tier factor applied (10_000 = list price)
    amount_nano: int  # credit this line costs (0 when paid by quota)
    price_version_id: int | None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "tokens": self.tokens,
            "rate_micro_per_mtok": self.rate_micro_per_mtok,
            "factor_bps": self.factor_bps,
            "amount_nano": self.amount_nano,
            "price_version_id": self.price_version_id,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Rating:
    lines: tuple[ChargeLine, ...]
    price_version_id: int | None
    quota_tokens: int = 0
    commitment_tokens: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def credit_nano(self) -> int:
        """What the wallet pays for this usage."""
        return sum(line.amount_nano for line in self.lines)


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


def line_cost_nano(tokens: int, price_micro_per_mtok: int, factor_bps: int = BPS) -> int:
    """tokens x price (micro-units per million tokens) x factor, in nano-units, rounded up once.

    price micro/Mtok = price / 1e6 micro-units per token = price / 1e3 nano-units per token.
    """
    return -((-tokens * price_micro_per_mtok * factor_bps) // (1000 * BPS))


def fee_cost_nano(fee_nano: int, requests: int, factor_bps: int = BPS) -> int:
    """A per-request fee for `requests` requests with the service-tier factor, rounded up once."""
    return -((-fee_nano * requests * factor_bps) // BPS)


def max_charge_nano(*, prices: Prices, prompt_tokens: int, max_tokens: int, service_tier: str = "default") -> int:
    """The most a request can cost in credit: every prompt token uncached, every allowed output token produced.

    Quota, commitments and tier discounts can only lower the real charge, so they are ignored here; the
    service-tier factor is applied (a priority request may cost more than list price).
    """
    factor = service_tier_factor_bps(prices, service_tier)
    return (
        line_cost_nano(prompt_tokens, prices.input_price_micro_per_mtok, factor)
        + line_cost_nano(max_tokens, prices.output_price_micro_per_mtok, factor)
        + fee_cost_nano(prices.request_fee_nano, 1, factor)
    )


def rate(*, usage: Usage, context: PricingContext, state: PeriodState) -> Rating:
    """Charge lines for `usage` under `context`. Pay-as-you-go: every token from credit at list price."""
    prices = context.prices
    factor = service_tier_factor_bps(prices, usage.service_tier)
    uncached = usage.input_tokens - usage.cached_input_tokens
    lines = []
    for kind, tokens, price in (
        ("input", uncached, prices.input_price_micro_per_mtok),
        ("cached_input", usage.cached_input_tokens, prices.cached_input_price_micro_per_mtok),
        ("output", usage.output_tokens, prices.output_price_micro_per_mtok),
    ):
        if tokens:
            lines.append(
                ChargeLine(
                    kind=kind,
                    source="credit",
                    tokens=tokens,
                    rate_micro_per_mtok=price,
                    factor_bps=factor,
                    amount_nano=line_cost_nano(tokens, price, factor),
                    price_version_id=prices.price_version_id,
                )
            )
    if prices.request_fee_nano and usage.requests:
        lines.append(
            ChargeLine(
                kind="request_fee",
                source="credit",
                tokens=0,
                rate_micro_per_mtok=0,
                factor_bps=factor,
                amount_nano=fee_cost_nano(prices.request_fee_nano, usage.requests, factor),
                price_version_id=prices.price_version_id,
            )
        )
    return Rating(lines=tuple(lines), price_version_id=prices.price_version_id)
