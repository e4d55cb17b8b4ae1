"""Rating throughput: usage records rated per second by the pure `rating.rate`, in bulk, beside a bare loop doing
the same arithmetic in the same run (the baseline: what the integer maths alone costs in CPython).

    python -m tests.load.rating [--records 1000000]

Three contexts: pay-as-you-go (list prices), a plan (override prices, quota, commitment, plan discount) and a
plan with graduated volume tiers. The period state for each record is made up in Python (as the claims would
return it), so this measures rating, not the database. Figures are noisy on a shared machine; compare the
ratio to the baseline rather than the absolute rate.
"""

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from billing.pricing import rating, tiers

START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
PRICES = rating.Prices(
    price_version_id=1,
    input_price_micro_per_mtok=2_500_000,
    cached_input_price_micro_per_mtok=1_250_000,
    output_price_micro_per_mtok=10_000_000,
)
PAYG = rating.PricingContext(1, "gpt-4o", "gpt-4o", "USD", PRICES)
PLAN = rating.PricingContext(
    1,
    "gpt-4o",
    "gpt-4o",
    "USD",
    PRICES,
    subscription_id=3,
    plan_discount_bps=1_000,
    allowances=(
        rating.Allowance(rating.QUOTA, 3, "model:gpt-4o", START, END, 10**9),
        rating.Allowance(rating.COMMITMENT, 9, "group:gpt-4o", START, END, 10**9),
    ),
)
BANDS = (tiers.Tier(0, 10_000), tiers.Tier(10**12, 9_000), tiers.Tier(10**13, 8_000))
TIERED = rating.PricingContext(
    1,
    "gpt-4o",
    "gpt-4o",
    "USD",
    PRICES,
    plan_discount_bps=1_000,
    tier=rating.TierPlan(4, tiers.GRADUATED, BANDS, "group:gpt-4o", START, END),
)
POOL = 10_000


def _usages(seed: int = 7) -> list[rating.Usage]:
    rng = random.Random(seed)
    usages = []
    for _ in range(POOL):
        prompt = rng.randint(10, 20_000)
        usages.append(rating.Usage("gpt-4o", prompt, rng.randint(0, prompt // 2), rng.randint(0, 2_000)))
    return usages


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def baseline_payg(usages: list[rating.Usage], n: int) -> int:
    """The pay-as-you-go arithmetic as a bare loop: three lines, each tokens x price x factor, rounded up."""
    total = 0
    p, c, o, bps = 2_500_000, 1_250_000, 10_000_000, 10_000
    for k in range(n):
        u = usages[k % POOL]
        total += _ceil_div((u.input_tokens - u.cached_input_tokens) * p * bps * bps, 1000 * bps * bps)
        total += _ceil_div(u.cached_input_tokens * c * bps * bps, 1000 * bps * bps)
        total += _ceil_div(u.output_tokens * o * bps * bps, 1000 * bps * bps)
    return total


def baseline_tiered(usages: list[rating.Usage], n: int) -> int:
    """The tiered arithmetic as a bare loop: discounted lines, then the marginal cost on the running volume."""
    total, volume, d, bps = 0, 0, 1_000, 10_000
    for k in range(n):
        u = usages[k % POOL]
        spend = (
            _ceil_div((u.input_tokens - u.cached_input_tokens) * 2_500_000 * bps * (bps - d), 1000 * bps * bps)
            + _ceil_div(u.cached_input_tokens * 1_250_000 * bps * (bps - d), 1000 * bps * bps)
            + _ceil_div(u.output_tokens * 10_000_000 * bps * (bps - d), 1000 * bps * bps)
        )
        total += tiers.graduated_cost_nano(volume + spend, BANDS) - tiers.graduated_cost_nano(volume, BANDS)
        volume += spend
    return total


def rate_payg(usages: list[rating.Usage], n: int) -> int:
    state, total = rating.PeriodState(), 0
    for k in range(n):
        total += rating.rate(usage=usages[k % POOL], context=PAYG, state=state).credit_nano
    return total


def rate_plan(usages: list[rating.Usage], n: int) -> int:
    total = 0
    for k in range(n):
        usage = usages[k % POOL]
        # As if the quota had 1,000 tokens left and the commitment 500 for this record.
        quota = min(usage.total_tokens, 1_000)
        state = rating.PeriodState(granted_tokens=(quota, min(usage.total_tokens - quota, 500)))
        total += rating.rate(usage=usage, context=PLAN, state=state).credit_nano
    return total


def rate_tiered(usages: list[rating.Usage], n: int) -> int:
    total, volume = 0, 0
    for k in range(n):
        usage = usages[k % POOL]
        rated = rating.rate(usage=usage, context=TIERED, state=rating.PeriodState(tier_volume_before_nano=volume))
        volume += int(rated.extra["tier_volume_nano"])  # type: ignore[call-overload]
        total += rated.credit_nano
    return total


def measure(
    function: Callable[[list[rating.Usage], int], int], usages: list[rating.Usage], n: int
) -> tuple[float, int]:
    started = time.perf_counter()
    result = function(usages, n)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    records = parser.parse_args().records
    usages = _usages()
    # The pure function and the bare loop must agree, or the comparison means nothing.
    assert rate_payg(usages, 20_000) == baseline_payg(usages, 20_000)
    assert rate_tiered(usages, 20_000) == baseline_tiered(usages, 20_000)
    rows = [
        ("baseline: bare loop, pay-as-you-go arithmetic", baseline_payg),
        ("rating.rate, pay-as-you-go", rate_payg),
        ("rating.rate, plan quota + commitment + discount", rate_plan),
        ("baseline: bare loop, discount + graduated tiers", baseline_tiered),
        ("rating.rate, discount + graduated tiers", rate_tiered),
    ]
    print(f"Rating {records:,} usage records per row (Python {'.'.join(map(str, __import__('sys').version_info[:3]))})")
    print(f"{'case':<50} {'seconds':>9} {'records/s':>12} {'vs baseline':>12}")
    base = 0.0
    for name, function in rows:
        seconds, _ = measure(function, usages, records)
        if name.startswith("baseline"):
            base = seconds
        print(f"{name:<50} {seconds:>9.2f} {records / seconds:>12,.0f} {seconds / base:>11.1f}x")


if __name__ == "__main__":
    main()
