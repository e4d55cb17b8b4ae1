"""Rating: usage quantities + pricing context + period-to-date state -> charge lines. Pure: no database, no clock.

Rounding rule: each charge line is rounded up to a whole nano-unit (a billionth of the currency), once, from
exact integer arithmetic (tokens x price x service-tier factor x (1 - plan discount)). A line is never rounded
down, so the provider never loses money to truncation, and the customer never pays more than one nano-unit per
line for rounding. Volume tiers price the period's volume with one rounding of the period function F (see
billing.pricing.tiers), and a usage's tier line is the exact difference F(after) - F(before) minus the usage's
volume, so the tier lines of a period add up to F(period volume) with no rounding drift. Invoices round their
totals to the currency's minor unit once, at the end (core.money.round_to_minor).

Drawdown order (DESIGN decision 4): the usage's tokens are taken, in the order input, cached input, output,
reasoning (reasoning tokens are part of the completion tokens: the output line bills the others),
first from the plan's included quota (a model's own allowance before its group's), then from reserved
commitments (in the order the context lists them), because those are use-or-lose; what is left is paid from
credit. Tokens drawn from a quota or commitment cost no credit, except the surcharge of a priority request
(factor above list price), which is paid from credit. Credit lines get the plan's discount on usage beyond the
included quota, then the volume tiers.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from billing.pricing import tiers as tier_maths
from billing.pricing.tiers import Tier

BPS = 10_000
SERVICE_TIERS = ("default", "priority", "flex", "batch")
QUOTA = "quota"
COMMITMENT = "commitment"
CREDIT = "credit"


@dataclass(frozen=True, slots=True)
class Prices:
    """One model's list prices at one time (a price version, or an organization's override of it)."""

    price_version_id: int | None
    input_price_micro_per_mtok: int
    cached_input_price_micro_per_mtok: int
    output_price_micro_per_mtok: int
    request_fee_nano: int = 0
    priority_factor_bps: int = 17_000
    flex_factor_bps: int = 5_000
    batch_factor_bps: int = 5_000
    # Long context: a request whose prompt has more tokens than the threshold is priced at the long prices.
    long_context_threshold_tokens: int | None = None
    long_input_price_micro_per_mtok: int | None = None
    long_cached_input_price_micro_per_mtok: int | None = None
    long_output_price_micro_per_mtok: int | None = None
    # Reasoning tokens (part of the completion tokens in OpenAI's accounting); None: the output price.
    reasoning_price_micro_per_mtok: int | None = None
    # The organization's negotiated price (billing.pricing.models.PriceOverride) these prices come from, if any.
    override_id: int | None = None


@dataclass(frozen=True, slots=True)
class Allowance:
    """Tokens an organization has in a period before paying from credit: a plan's included quota (`owner_id` is
    the subscription) or a reserved commitment (`owner_id` is the commitment). Its counter row is keyed by
    (organization, source, owner_id, scope_key, period_start); `limit_tokens` is what the period holds when the
    counter is first created."""

    source: str  # QUOTA | COMMITMENT
    owner_id: int
    scope_key: str  # "model:<slug>" | "group:<group>"
    period_start: datetime
    period_end: datetime
    limit_tokens: int

    @property
    def ref(self) -> str:
        return f"{'subscription' if self.source == QUOTA else 'commitment'}:{self.owner_id}"


@dataclass(frozen=True, slots=True)
class TierPlan:
    """The volume-tier schedule that applies to this model for the organization's current period."""

    schedule_id: int
    mode: str  # tiers.GRADUATED | tiers.VOLUME
    tiers: tuple[Tier, ...]
    scope_key: str
    period_start: datetime
    period_end: datetime


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
    # The plan: its subscription, and its discount on usage beyond the included quota (basis points).
    subscription_id: int | None = None
    plan_discount_bps: int = 0
    # Included quota and commitments that cover this model, in drawdown order.
    allowances: tuple[Allowance, ...] = ()
    tier: TierPlan | None = None

    @property
    def needs_period_state(self) -> bool:
        """Whether rating depends on period-to-date usage (quotas, commitments, tiers): if not, rating needs no
        database at all and the gateway settles in a single round trip."""
        return bool(self.allowances) or self.tier is not None


@dataclass(frozen=True, slots=True)
class PeriodState:
    """Period-to-date usage that rating depends on, as claimed for this usage (see services.rating):
    `granted_tokens[i]` is what allowance i of the context gave this usage (claimed atomically, never more than
    the allowance had left), and `tier_volume_before_nano` the period's tier volume before this usage."""

    granted_tokens: tuple[int, ...] = ()
    tier_volume_before_nano: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    model_slug: str
    input_tokens: int
    cached_input_tokens: int = 0
    output_tokens: int = 0
    service_tier: str = "default"
    requests: int = 1
    # Of the output tokens, those the model spent reasoning (OpenAI counts them in completion_tokens).
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Tokens of every kind; what quotas and commitments count (a cached input token counts once)."""
        return self.input_tokens + self.output_tokens


class ChargeLine(NamedTuple):
    """One line of a charge: `tokens` of one kind paid from one source at one rate. (An immutable named tuple:
    a rating makes several per request, and a tuple is built several times faster than a frozen dataclass.)"""

    # "input" | "cached_input" | "output" | "reasoning" | "request_fee" | "priority_surcharge" | "volume_discount"
    kind: str
    source: str  # "credit" (the wallet) | "quota" (a plan's included tokens) | "commitment"
    tokens: int
    rate_micro_per_mtok: int  # the list (or negotiated) rate of this kind, before factor and discount
    factor_bps: int  # the service-tier factor applied (10_000 = list price)
    amount_nano: int  # credit this line costs (0 when paid by quota; negative for a tier discount)
    price_version_id: int | None
    detail: str = ""
    discount_bps: int = 0  # the plan's discount on usage beyond its quota
    ref: str = ""  # what paid or priced it: "subscription:3", "commitment:7", "override:2", "tier_schedule:1"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "tokens": self.tokens,
            "rate_micro_per_mtok": self.rate_micro_per_mtok,
            "factor_bps": self.factor_bps,
            "discount_bps": self.discount_bps,
            "amount_nano": self.amount_nano,
            "price_version_id": self.price_version_id,
            "ref": self.ref,
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


def kind_rates(prices: Prices, prompt_tokens: int) -> tuple[int, int, int]:
    """(input, cached input, output) rates for a request with `prompt_tokens`: the long-context prices when the
    prompt is longer than the version's threshold."""
    threshold = prices.long_context_threshold_tokens
    if threshold is not None and prompt_tokens > threshold:
        return (
            prices.long_input_price_micro_per_mtok or 0,
            prices.long_cached_input_price_micro_per_mtok or 0,
            prices.long_output_price_micro_per_mtok or 0,
        )
    return (
        prices.input_price_micro_per_mtok,
        prices.cached_input_price_micro_per_mtok,
        prices.output_price_micro_per_mtok,
    )


def reasoning_rate(prices: Prices, prompt_tokens: int) -> int:
    """The rate of reasoning tokens: the version's reasoning price, or its output price when it has none. Past the
    long-context threshold the whole request is at the long prices, reasoning at the long output price."""
    threshold = prices.long_context_threshold_tokens
    if threshold is not None and prompt_tokens > threshold:
        return prices.long_output_price_micro_per_mtok or 0
    if prices.reasoning_price_micro_per_mtok is None:
        return prices.output_price_micro_per_mtok
    return prices.reasoning_price_micro_per_mtok


def line_cost_nano(tokens: int, price_micro_per_mtok: int, factor_bps: int = BPS, discount_bps: int = 0) -> int:
    """tokens x price (micro-units per million tokens) x factor x (1 - discount), in nano-units, rounded up once.

    price micro/Mtok = price / 1e6 micro-units per token = price / 1e3 nano-units per token.
    """
    return -((-tokens * price_micro_per_mtok * factor_bps * (BPS - discount_bps)) // (1000 * BPS * BPS))


def fee_cost_nano(fee_nano: int, requests: int, factor_bps: int = BPS, discount_bps: int = 0) -> int:
    """A per-request fee for `requests` requests with the service-tier factor and discount, rounded up once."""
    return -((-fee_nano * requests * factor_bps * (BPS - discount_bps)) // (BPS * BPS))


def max_charge_nano(*, prices: Prices, prompt_tokens: int, max_tokens: int, service_tier: str = "default") -> int:
    """The most a request can cost in credit: every prompt token uncached, every allowed output token produced.

    Quota, commitments, plan discounts and tiers can only lower the real charge, so they are ignored here; the
    service-tier factor (a priority request may cost more than list price) and long-context prices apply. Any
    output token may be a reasoning token, so output is held at the dearer of the two rates.
    """
    factor = service_tier_factor_bps(prices, service_tier)
    input_rate, _, output_rate = kind_rates(prices, prompt_tokens)
    output_rate = max(output_rate, reasoning_rate(prices, prompt_tokens))
    return (
        line_cost_nano(prompt_tokens, input_rate, factor)
        + line_cost_nano(max_tokens, output_rate, factor)
        + fee_cost_nano(prices.request_fee_nano, 1, factor)
    )


def _usage_check(usage: Usage) -> None:
    counts = (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens)
    if min(counts) < 0 or usage.requests < 0:
        raise ValueError("token and request counts cannot be negative")
    if usage.cached_input_tokens > usage.input_tokens:
        raise ValueError("cached input tokens are part of the input tokens and cannot exceed them")
    if usage.reasoning_tokens > usage.output_tokens:
        raise ValueError("reasoning tokens are part of the output tokens and cannot exceed them")


def _lines_before_tiers(usage: Usage, context: PricingContext, state: PeriodState) -> list[ChargeLine]:
    """Every line of the usage except the volume-tier line: allowance draws, then credit at the plan's discount."""
    _usage_check(usage)
    prices = context.prices
    version = prices.price_version_id
    factor = service_tier_factor_bps(prices, usage.service_tier)
    rates = (*kind_rates(prices, usage.input_tokens), reasoning_rate(prices, usage.input_tokens))
    kinds = ("input", "cached_input", "output", "reasoning")
    # Reasoning tokens are part of the completion tokens: the output line bills the rest, never both.
    left = [
        usage.input_tokens - usage.cached_input_tokens,
        usage.cached_input_tokens,
        usage.output_tokens - usage.reasoning_tokens,
        usage.reasoning_tokens,
    ]
    lines: list[ChargeLine] = []
    granted = state.granted_tokens
    if granted and (sum(granted) > usage.total_tokens or min(granted) < 0 or len(granted) > len(context.allowances)):
        raise ValueError("the period state grants more tokens than the usage has, or to allowances it lacks")
    for allowance, grant in zip(context.allowances, granted, strict=False):
        for index in range(len(kinds)):
            take = min(grant, left[index])
            if not take:
                continue
            left[index] -= take
            grant -= take
            kind, rate_ = kinds[index], rates[index]
            lines.append(ChargeLine(kind, allowance.source, take, rate_, factor, 0, version, ref=allowance.ref))
            if factor > BPS:  # a priority request pays its premium over list price even on prepaid tokens
                lines.append(
                    ChargeLine(
                        "priority_surcharge",
                        CREDIT,
                        take,
                        rate_,
                        factor - BPS,
                        line_cost_nano(take, rate_, factor - BPS),
                        version,
                        detail=f"priority premium on {kind} tokens paid by {allowance.source}",
                        ref=allowance.ref,
                    )
                )
    discount = context.plan_discount_bps
    override_ref = f"override:{prices.override_id}" if prices.override_id is not None else ""
    for index in range(len(kinds)):
        tokens = left[index]
        if tokens:
            lines.append(
                ChargeLine(
                    kinds[index],
                    CREDIT,
                    tokens,
                    rates[index],
                    factor,
                    line_cost_nano(tokens, rates[index], factor, discount),
                    version,
                    discount_bps=discount,
                    ref=override_ref,
                )
            )
    if prices.request_fee_nano and usage.requests:
        lines.append(
            ChargeLine(
                "request_fee",
                CREDIT,
                0,
                0,
                factor,
                fee_cost_nano(prices.request_fee_nano, usage.requests, factor, discount),
                version,
                detail=f"{usage.requests} request(s)",
                discount_bps=discount,
                ref=override_ref,
            )
        )
    return lines


def tier_volume_nano(*, usage: Usage, context: PricingContext, state: PeriodState) -> int:
    """The volume this usage adds to its tier schedule's period: its credit spend before tiers. services.rating
    claims it on the period counter (it needs `state.granted_tokens`, not the tier volume)."""
    if context.tier is None:
        return 0
    return sum(line.amount_nano for line in _lines_before_tiers(usage, context, state) if line.source == CREDIT)


def rate(*, usage: Usage, context: PricingContext, state: PeriodState) -> Rating:
    """Charge lines for `usage` under `context`, given the period-to-date `state` claimed for it."""
    lines = _lines_before_tiers(usage, context, state)
    extra: dict[str, object] = {}
    tier = context.tier
    if tier is not None:
        volume = sum(line.amount_nano for line in lines if line.source == CREDIT)
        before = state.tier_volume_before_nano
        charged = tier_maths.marginal_cost_nano(before, volume, tier.tiers)
        extra = {"tier_volume_before_nano": before, "tier_volume_nano": volume}
        if charged != volume:
            lines.append(
                ChargeLine(
                    "volume_discount",
                    CREDIT,
                    0,
                    0,
                    BPS,
                    charged - volume,
                    context.prices.price_version_id,
                    detail=(
                        f"{tier.mode} volume tiers: period volume {before} -> {before + volume} nano "
                        f"(tier {tier_maths.tier_of(before + volume, tier.tiers) + 1} of {len(tier.tiers)})"
                    ),
                    ref=f"tier_schedule:{tier.schedule_id}",
                )
            )
    quota = commitment = 0
    if state.granted_tokens:
        quota = sum(line.tokens for line in lines if line.source == QUOTA)
        commitment = sum(line.tokens for line in lines if line.source == COMMITMENT)
    return Rating(
        lines=tuple(lines),
        price_version_id=context.prices.price_version_id,
        quota_tokens=quota,
        commitment_tokens=commitment,
        extra=extra,
    )
