"""The pure rating function: drawdown order, discounts, service tiers, long context, tiers, rounding."""

import dataclasses
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import rating, tiers
from billing.pricing.rating import Allowance, PeriodState, Prices, PricingContext, TierPlan, Usage

START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
# gpt-4o's list prices: $2.50 input, $1.25 cached input, $10 output per million tokens.
PRICES = Prices(
    price_version_id=7,
    input_price_micro_per_mtok=2_500_000,
    cached_input_price_micro_per_mtok=1_250_000,
    output_price_micro_per_mtok=10_000_000,
)
QUOTA_MODEL = Allowance(rating.QUOTA, 3, "model:gpt-4o", START, END, 1_000)
QUOTA_GROUP = Allowance(rating.QUOTA, 3, "group:gpt-4o", START, END, 500)
COMMIT = Allowance(rating.COMMITMENT, 9, "group:gpt-4o", START, END, 10_000)


def context(**options) -> PricingContext:
    return PricingContext(
        organization_id=1, model_slug="gpt-4o", model_group="gpt-4o", currency="USD", prices=PRICES, **options
    )


def summary(rated: rating.Rating) -> list[tuple[str, str, int, int]]:
    return [(line.kind, line.source, line.tokens, line.amount_nano) for line in rated.lines]


def test_pay_as_you_go_needs_no_period_state():
    ctx = context()
    assert not ctx.needs_period_state
    rated = rating.rate(usage=Usage("gpt-4o", 1_000, 200, 100), context=ctx, state=PeriodState())
    # 800 x $2.50/M = 2,000,000 nano; 200 x $1.25/M = 250,000; 100 x $10/M = 1,000,000.
    assert summary(rated) == [
        ("input", "credit", 800, 2_000_000),
        ("cached_input", "credit", 200, 250_000),
        ("output", "credit", 100, 1_000_000),
    ]
    assert rated.credit_nano == 3_250_000


def test_quota_then_group_quota_then_commitment_then_credit_in_kind_order():
    ctx = context(allowances=(QUOTA_MODEL, QUOTA_GROUP, COMMIT), plan_discount_bps=2_000, subscription_id=3)
    assert ctx.needs_period_state
    usage = Usage("gpt-4o", input_tokens=1_200, cached_input_tokens=300, output_tokens=900)  # 2,100 tokens
    # What the claims granted: the model's quota its last 1,000 tokens, the group's its 500, the commitment 400
    # (say, all it had left this month); the other 200 tokens are paid from credit.
    rated = rating.rate(usage=usage, context=ctx, state=PeriodState(granted_tokens=(1_000, 500, 400)))
    assert summary(rated) == [
        # model quota: 900 uncached input, then 100 of the cached input
        ("input", "quota", 900, 0),
        ("cached_input", "quota", 100, 0),
        # group quota: the other 200 cached, then 300 output
        ("cached_input", "quota", 200, 0),
        ("output", "quota", 300, 0),
        # commitment: 400 output
        ("output", "commitment", 400, 0),
        # credit: the last 200 output at $10/M less the plan's 20 %: 200 x 10 x 0.8 / 1000 = 1,600,000 nano
        ("output", "credit", 200, 1_600_000),
    ]
    assert (rated.quota_tokens, rated.commitment_tokens, rated.credit_nano) == (1_500, 400, 1_600_000)
    assert [line.ref for line in rated.lines[:5]] == ["subscription:3"] * 4 + ["commitment:9"]
    assert all(line.price_version_id == 7 for line in rated.lines)
    assert rated.lines[-1].discount_bps == 2_000


def test_state_cannot_grant_more_than_the_usage_has():
    with pytest.raises(ValueError, match="grants more"):
        rating.rate(
            usage=Usage("gpt-4o", 10),
            context=context(allowances=(QUOTA_MODEL,)),
            state=PeriodState(granted_tokens=(11,)),
        )


def test_service_tiers_through_every_way_of_selling():
    ctx = context(allowances=(QUOTA_MODEL,), plan_discount_bps=1_000)
    usage = Usage("gpt-4o", input_tokens=1_000, output_tokens=1_000, service_tier="priority")
    rated = rating.rate(usage=usage, context=ctx, state=PeriodState(granted_tokens=(1_000,)))
    # Quota pays the input at list price; the priority premium (70 %) on it is credit: 1000 x 2.5 x 0.7 = 1.75M.
    # Output on credit: 1000 x $10/M x 1.7 x (1 - 10 %) = 15,300,000 nano.
    assert summary(rated) == [
        ("input", "quota", 1_000, 0),
        ("priority_surcharge", "credit", 1_000, 1_750_000),
        ("output", "credit", 1_000, 15_300_000),
    ]
    batch = rating.rate(
        usage=Usage("gpt-4o", 1_000, 0, 1_000, service_tier="batch"), context=context(), state=PeriodState()
    )
    assert batch.credit_nano == (2_500_000 + 10_000_000) // 2
    with pytest.raises(ValueError, match="unknown service tier"):
        rating.rate(usage=Usage("gpt-4o", 1, service_tier="turbo"), context=context(), state=PeriodState())


def test_long_context_prices_apply_above_the_threshold():
    long = Prices(
        price_version_id=8,
        input_price_micro_per_mtok=1_250_000,
        cached_input_price_micro_per_mtok=312_500,
        output_price_micro_per_mtok=5_000_000,
        long_context_threshold_tokens=128_000,
        long_input_price_micro_per_mtok=2_500_000,
        long_cached_input_price_micro_per_mtok=625_000,
        long_output_price_micro_per_mtok=10_000_000,
    )
    ctx = PricingContext(organization_id=1, model_slug="m", model_group="", currency="USD", prices=long)
    short = rating.rate(usage=Usage("m", 128_000, 0, 1_000), context=ctx, state=PeriodState())
    over = rating.rate(usage=Usage("m", 128_001, 0, 1_000), context=ctx, state=PeriodState())
    assert short.credit_nano == 128_000 * 1_250 + 1_000 * 5_000
    assert over.credit_nano == 128_001 * 2_500 + 1_000 * 10_000
    # The hold is sized with the long prices too.
    assert rating.max_charge_nano(prices=long, prompt_tokens=128_001, max_tokens=1_000) == over.credit_nano


def test_request_fee_gets_factor_and_discount():
    prices = Prices(None, 0, 0, 0, request_fee_nano=1_000_000)
    ctx = PricingContext(1, "m", "", "USD", prices, plan_discount_bps=2_500)
    rated = rating.rate(usage=Usage("m", 0, service_tier="priority", requests=2), context=ctx, state=PeriodState())
    assert summary(rated) == [("request_fee", "credit", 0, 2 * 1_000_000 * 17 // 10 * 3 // 4)]


USD = 1_000_000_000
GRADUATED = TierPlan(
    schedule_id=4,
    mode=tiers.GRADUATED,
    tiers=(tiers.Tier(0, 10_000), tiers.Tier(1 * USD, 5_000)),
    scope_key="group:gpt-4o",
    period_start=START,
    period_end=END,
)


def test_tier_line_is_the_marginal_cost_of_the_usage():
    ctx = context(tier=GRADUATED)
    usage = Usage("gpt-4o", input_tokens=0, output_tokens=100_000)  # $1.00 at list
    assert rating.tier_volume_nano(usage=usage, context=ctx, state=PeriodState()) == USD
    # The period had $0.50 of volume: half of this usage is at list, half at 50 % -> $0.75, a -$0.25 line.
    rated = rating.rate(usage=usage, context=ctx, state=PeriodState(tier_volume_before_nano=USD // 2))
    assert summary(rated) == [("output", "credit", 100_000, USD), ("volume_discount", "credit", 0, -USD // 4)]
    assert rated.credit_nano == 3 * USD // 4
    assert rated.extra == {"tier_volume_before_nano": USD // 2, "tier_volume_nano": USD}


usages = st.builds(
    Usage,
    model_slug=st.just("gpt-4o"),
    input_tokens=st.integers(0, 2_000_000),
    cached_input_tokens=st.just(0),
    output_tokens=st.integers(0, 500_000),
    service_tier=st.sampled_from(rating.SERVICE_TIERS),
)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(usages, max_size=30), discount=st.integers(0, 10_000))
def test_a_period_of_usages_costs_exactly_f_of_its_volume(batch, discount):
    """Rated one after another against the running volume, the usages' credit adds up to F(period volume)."""
    ctx = context(tier=GRADUATED, plan_discount_bps=discount)
    volume, charged = 0, 0
    for usage in batch:
        state = PeriodState(tier_volume_before_nano=volume)
        added = rating.tier_volume_nano(usage=usage, context=ctx, state=state)
        charged += rating.rate(usage=usage, context=ctx, state=state).credit_nano
        volume += added
    assert charged == tiers.graduated_cost_nano(volume, GRADUATED.tiers)


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.integers(0, 10**9),
    price=st.integers(0, 10**9),
    factor=st.integers(0, 30_000),
    discount=st.integers(0, 10_000),
)
def test_each_line_is_rounded_up_once_from_the_exact_amount(tokens, price, factor, discount):
    exact = Fraction(tokens * price * factor * (10_000 - discount), 1000 * 10_000 * 10_000)
    amount = rating.line_cost_nano(tokens, price, factor, discount)
    assert 0 <= amount - exact < 1


@settings(max_examples=300, deadline=None)
@given(
    fee=st.integers(0, 10**12),
    requests=st.integers(0, 1_000),
    factor=st.integers(0, 30_000),
    discount=st.integers(0, 10_000),
)
def test_a_request_fee_is_rounded_up_once_from_the_exact_amount(fee, requests, factor, discount):
    exact = Fraction(fee * requests * factor * (10_000 - discount), 10_000 * 10_000)
    amount = rating.fee_cost_nano(fee, requests, factor, discount)
    assert 0 <= amount - exact < 1


# o-series style: reasoning dearer than visible output ($10/M output, $40/M reasoning).
REASONING = dataclasses.replace(PRICES, reasoning_price_micro_per_mtok=40_000_000)


def test_reasoning_tokens_are_billed_at_the_reasoning_price_and_not_again_as_output():
    ctx = PricingContext(1, "gpt-4o", "gpt-4o", "USD", REASONING)
    usage = Usage("gpt-4o", 1_000, 0, 1_000, reasoning_tokens=900)
    rated = rating.rate(usage=usage, context=ctx, state=PeriodState())
    # 100 visible output x $10/M = 1,000,000 nano; 900 reasoning x $40/M = 36,000,000.
    assert summary(rated) == [
        ("input", "credit", 1_000, 2_500_000),
        ("output", "credit", 100, 1_000_000),
        ("reasoning", "credit", 900, 36_000_000),
    ]
    assert sum(line.tokens for line in rated.lines) == usage.input_tokens + usage.output_tokens


def test_without_a_reasoning_price_reasoning_costs_what_output_costs():
    ctx = context()
    with_reasoning = rating.rate(
        usage=Usage("gpt-4o", 10, 0, 1_000, reasoning_tokens=999), context=ctx, state=PeriodState()
    )
    without = rating.rate(usage=Usage("gpt-4o", 10, 0, 1_000), context=ctx, state=PeriodState())
    assert with_reasoning.credit_nano == without.credit_nano
    assert [line.kind for line in with_reasoning.lines] == ["input", "output", "reasoning"]


def test_reasoning_cannot_exceed_the_output_it_is_part_of():
    with pytest.raises(ValueError, match="reasoning tokens are part of the output"):
        rating.rate(usage=Usage("gpt-4o", 1, 0, 5, reasoning_tokens=6), context=context(), state=PeriodState())
    with pytest.raises(ValueError, match="negative"):
        rating.rate(usage=Usage("gpt-4o", 1, 0, 5, reasoning_tokens=-1), context=context(), state=PeriodState())


def test_the_hold_covers_output_at_the_dearer_of_output_and_reasoning():
    # 1,000 prompt tokens at $2.50/M + 500 output tokens at $40/M (any of them may be reasoning).
    assert rating.max_charge_nano(prices=REASONING, prompt_tokens=1_000, max_tokens=500) == 2_500_000 + 20_000_000
    cheap = dataclasses.replace(PRICES, reasoning_price_micro_per_mtok=1_000_000)
    assert rating.max_charge_nano(prices=cheap, prompt_tokens=1_000, max_tokens=500) == 2_500_000 + 5_000_000


def test_reasoning_is_drawn_from_quota_after_visible_output():
    ctx = PricingContext(1, "gpt-4o", "gpt-4o", "USD", REASONING, allowances=(QUOTA_MODEL,), subscription_id=3)
    usage = Usage("gpt-4o", 500, 0, 800, reasoning_tokens=600)
    rated = rating.rate(usage=usage, context=ctx, state=PeriodState(granted_tokens=(1_000,)))
    assert summary(rated) == [
        ("input", "quota", 500, 0),
        ("output", "quota", 200, 0),
        ("reasoning", "quota", 300, 0),
        ("reasoning", "credit", 300, 12_000_000),
    ]


def test_long_context_reasoning_is_at_the_long_output_price():
    long = dataclasses.replace(
        REASONING,
        long_context_threshold_tokens=100,
        long_input_price_micro_per_mtok=5_000_000,
        long_cached_input_price_micro_per_mtok=2_500_000,
        long_output_price_micro_per_mtok=15_000_000,
    )
    rated = rating.rate(
        usage=Usage("gpt-4o", 1_000, 0, 100, reasoning_tokens=100),
        context=PricingContext(1, "gpt-4o", "gpt-4o", "USD", long),
        state=PeriodState(),
    )
    assert summary(rated) == [("input", "credit", 1_000, 5_000_000), ("reasoning", "credit", 100, 1_500_000)]
