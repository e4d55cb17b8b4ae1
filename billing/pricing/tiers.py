"""Volume tiers: the price of a billing period's volume. Pure integer maths, no database, no clock.

A tier schedule applies to one model or one model group. Its volume is the period's on-demand spend on that
scope measured at the price before tiers (list price, or the organization's override, with the service-tier
factor and the plan's discount applied): a token of a frontier model and a token of a small one are not worth
the same, so spend is the one quantity in which a group's volume adds up. Each tier starts at a volume
(`start_nano`, the first at 0) and prices the volume inside it at `factor_bps` of its value (10_000 = full
price, 8_000 = 20 % off). Factors never rise from one tier to the next.

- Graduated: each slice of volume pays its own tier's factor. F(V) = ceil(sum of factor x slice / 10_000).
- Volume: the whole period pays the factor of the tier its last unit falls in. F(V) = ceil(factor x V / 10_000).

Real time, both modes charge a usage the graduated marginal cost F_grad(V_after) - F_grad(V_before), where
V_before is the period volume claimed atomically before it (see services.rating). Those marginal charges
telescope: whatever the order and concurrency of the requests, their sum over the period is exactly
F_grad(V_period). At period end a true-up line brings the period to its price: F_mode(V) - F_grad(V), which is
zero for graduated schedules and a credit (never a charge) for volume schedules, since with non-rising factors
pricing every unit at the last tier's factor costs no more than pricing each slice at its own.
"""

import itertools
from dataclasses import dataclass

BPS = 10_000
GRADUATED = "graduated"
VOLUME = "volume"
MODES = (GRADUATED, VOLUME)


@dataclass(frozen=True, slots=True)
class Tier:
    start_nano: int
    factor_bps: int


def tiers_check(tiers: tuple[Tier, ...] | list[Tier]) -> None:
    """ValueError unless the tiers start at 0, rise strictly, and have factors in [0, 10_000] that never rise."""
    if not tiers:
        raise ValueError("a tier schedule needs at least one tier")
    if tiers[0].start_nano != 0:
        raise ValueError("the first tier must start at 0")
    for tier in tiers:
        if not 0 <= tier.factor_bps <= BPS:
            raise ValueError("a tier's factor must be between 0 and 10000 basis points (a tier is never a surcharge)")
    for before, after in itertools.pairwise(tiers):
        if after.start_nano <= before.start_nano:
            raise ValueError("tiers must be in order of their start, each starting above the one before")
        if after.factor_bps > before.factor_bps:
            raise ValueError("a higher tier cannot cost more than a lower one (factors must not rise)")


def _weighted(volume: int, tiers: tuple[Tier, ...]) -> int:
    """Sum of factor x slice over the tiers (basis-point nano-units), exact."""
    total = 0
    for index, tier in enumerate(tiers):
        if volume <= tier.start_nano:
            break
        end = tiers[index + 1].start_nano if index + 1 < len(tiers) else volume
        total += tier.factor_bps * (min(volume, end) - tier.start_nano)
    return total


def graduated_cost_nano(volume_nano: int, tiers: tuple[Tier, ...]) -> int:
    """F_grad(V): each slice of the volume at its own tier's factor, rounded up once."""
    return -(-_weighted(volume_nano, tiers) // BPS)


def tier_of(volume_nano: int, tiers: tuple[Tier, ...]) -> int:
    """Index of the tier the volume's last unit falls in (0 for no volume)."""
    index = 0
    for position, tier in enumerate(tiers):
        if tier.start_nano < volume_nano:
            index = position
    return index


def volume_cost_nano(volume_nano: int, tiers: tuple[Tier, ...]) -> int:
    """F_vol(V): the whole volume at the factor of the tier its last unit falls in, rounded up once."""
    return -(-tiers[tier_of(volume_nano, tiers)].factor_bps * volume_nano // BPS)


def period_cost_nano(volume_nano: int, tiers: tuple[Tier, ...], mode: str) -> int:
    """What a period with this volume costs under the schedule."""
    if mode == GRADUATED:
        return graduated_cost_nano(volume_nano, tiers)
    if mode == VOLUME:
        return volume_cost_nano(volume_nano, tiers)
    raise ValueError(f"unknown tier mode {mode!r}")


def marginal_cost_nano(before_nano: int, amount_nano: int, tiers: tuple[Tier, ...]) -> int:
    """The real-time charge for `amount_nano` of volume on top of `before_nano`: F_grad(after) - F_grad(before)."""
    return graduated_cost_nano(before_nano + amount_nano, tiers) - graduated_cost_nano(before_nano, tiers)


def trueup_nano(volume_nano: int, tiers: tuple[Tier, ...], mode: str) -> int:
    """The period-end adjustment: the period's price minus what real time charged (negative is a credit)."""
    return period_cost_nano(volume_nano, tiers, mode) - graduated_cost_nano(volume_nano, tiers)
