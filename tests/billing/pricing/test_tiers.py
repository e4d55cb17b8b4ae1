"""Volume-tier maths: hand-worked examples and properties (billing.pricing.tiers)."""

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import tiers
from billing.pricing.tiers import Tier

USD = 1_000_000_000
# List price up to $100 of period volume, 10 % off from $100 to $1,000, 20 % off beyond.
SCHEDULE = (Tier(0, 10_000), Tier(100 * USD, 9_000), Tier(1_000 * USD, 8_000))


@pytest.mark.parametrize(
    ("volume", "graduated", "volume_priced"),
    [
        (0, 0, 0),
        (50 * USD, 50 * USD, 50 * USD),
        (100 * USD, 100 * USD, 100 * USD),  # the 100th dollar is still in the first tier
        (150 * USD, 145 * USD, 135 * USD),  # 100 + 50 x 0.9 ; 150 x 0.9
        (1_500 * USD, 1_310 * USD, 1_200 * USD),  # 100 + 900 x 0.9 + 500 x 0.8 ; 1500 x 0.8
    ],
)
def test_hand_worked_period_costs(volume, graduated, volume_priced):
    assert tiers.graduated_cost_nano(volume, SCHEDULE) == graduated
    assert tiers.volume_cost_nano(volume, SCHEDULE) == volume_priced
    assert tiers.trueup_nano(volume, SCHEDULE, tiers.VOLUME) == volume_priced - graduated
    assert tiers.trueup_nano(volume, SCHEDULE, tiers.GRADUATED) == 0


def test_hand_worked_marginal_charges():
    # $20 on top of $90: $10 at list, $10 at 90 % -> $19.
    assert tiers.marginal_cost_nano(90 * USD, 20 * USD, SCHEDULE) == 19 * USD
    # Volume pricing's own marginal cost can be negative: crossing $100 reprices everything before it.
    assert tiers.volume_cost_nano(100 * USD + 1, SCHEDULE) - tiers.volume_cost_nano(100 * USD, SCHEDULE) < 0


def test_rounding_is_once_per_period_function():
    # A factor of 33.33 %: each nano-unit of volume is worth 0.3333 nano. F rounds the exact sum up once, so the
    # marginal charges are 1, 0, 0 (not 1, 1, 1): rounding never accumulates across usages.
    third = (Tier(0, 3_333),)
    charges = [tiers.marginal_cost_nano(before, 1, third) for before in range(3)]
    assert charges == [1, 0, 0]
    assert sum(charges) == tiers.graduated_cost_nano(3, third) == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((), "at least one"),
        ((Tier(5, 10_000),), "start at 0"),
        ((Tier(0, 10_000), Tier(0, 9_000)), "in order"),
        ((Tier(0, 10_000), Tier(10, 9_000), Tier(5, 8_000)), "in order"),
        ((Tier(0, 9_000), Tier(10, 9_500)), "cannot cost more"),
        ((Tier(0, 10_001),), "between 0 and 10000"),
    ],
)
def test_invalid_schedules_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        tiers.tiers_check(bad)


@st.composite
def schedules(draw):
    count = draw(st.integers(1, 5))
    starts = sorted(draw(st.sets(st.integers(1, 10**13), min_size=count - 1, max_size=count - 1)))
    factors = sorted(draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count)), reverse=True)
    schedule = tuple(Tier(start, factor) for start, factor in zip([0, *starts], factors, strict=True))
    tiers.tiers_check(schedule)
    return schedule


volumes = st.integers(0, 2 * 10**13)


@settings(max_examples=300, deadline=None)
@given(schedule=schedules(), a=volumes, b=volumes)
def test_graduated_cost_never_decreases_with_volume(schedule, a, b):
    low, high = sorted((a, b))
    assert tiers.graduated_cost_nano(low, schedule) <= tiers.graduated_cost_nano(high, schedule)


@settings(max_examples=300, deadline=None)
@given(schedule=schedules(), amounts=st.lists(st.integers(0, 10**12), max_size=40), seed=st.integers(0, 2**32))
def test_marginal_charges_sum_to_the_period_total_in_any_order(schedule, amounts, seed):
    """Whatever order concurrent requests claim their volume in, their marginal charges add up to F(V)."""
    total = sum(amounts)
    for order in (amounts, random.Random(seed).sample(amounts, len(amounts))):
        before, charged = 0, 0
        for amount in order:
            charge = tiers.marginal_cost_nano(before, amount, schedule)
            assert 0 <= charge <= amount  # a tier never costs more than the volume it prices
            charged += charge
            before += amount
        assert charged == tiers.graduated_cost_nano(total, schedule)
        for mode in tiers.MODES:
            trueup = tiers.trueup_nano(total, schedule, mode)
            assert charged + trueup == tiers.period_cost_nano(total, schedule, mode)
            assert trueup <= 0  # the true-up is never a surprise charge


@settings(max_examples=300, deadline=None)
@given(schedule=schedules(), volume=volumes)
def test_period_functions_follow_the_rounding_rule(schedule, volume):
    """F is the exact value rounded up once: within one nano-unit above it."""
    exact = Fraction(0)
    for index, tier in enumerate(schedule):
        end = schedule[index + 1].start_nano if index + 1 < len(schedule) else volume
        exact += Fraction(tier.factor_bps, 10_000) * max(0, min(volume, end) - tier.start_nano)
    assert 0 <= tiers.graduated_cost_nano(volume, schedule) - exact < 1
    last = schedule[tiers.tier_of(volume, schedule)].factor_bps
    assert 0 <= tiers.volume_cost_nano(volume, schedule) - Fraction(last * volume, 10_000) < 1
