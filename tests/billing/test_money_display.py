"""The one display rule for amounts (core.money.money_display): exact, never rounded, at least the currency's
minor unit, never a non-zero amount shown as zero."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import MAX_AMOUNT_NANO, NANO_PER_UNIT, money_display

CENT = NANO_PER_UNIT // 100


@pytest.mark.parametrize(
    ("nano", "text"),
    [
        (0, "$0.00"),
        (20 * NANO_PER_UNIT, "$20.00"),
        (50 * CENT, "$0.50"),
        (CENT, "$0.01"),
        (150 * CENT, "$1.50"),
        # Finer than a cent: as many decimals as needed, trailing zeros trimmed.
        (4_250_000, "$0.00425"),
        (375_000, "$0.000375"),
        (80, "$0.00000008"),  # the charge that used to read "$0.00"
        (8, "$0.000000008"),
        (1, "$0.000000001"),
        (999_999_999, "$0.999999999"),  # never rounded up to $1.00
        (NANO_PER_UNIT + 1, "$1.000000001"),
        (12 * NANO_PER_UNIT + 345 * 10**6, "$12.345"),
        # Thousands grouped, whatever the size.
        (1_234_567 * NANO_PER_UNIT + 50 * CENT, "$1,234,567.50"),
        (MAX_AMOUNT_NANO, "$1,000,000,000.00"),
        (10**21 + 1, "$1,000,000,000,000.000000001"),
        (2**63 - 1, "$9,223,372,036.854775807"),  # the largest BigInteger
        # Negative amounts: the sign before the symbol.
        (-350 * CENT, "-$3.50"),
        (-1, "-$0.000000001"),
        (-(2**63), "-$9,223,372,036.854775808"),
        (-1_234_567 * NANO_PER_UNIT, "-$1,234,567.00"),
    ],
)
def test_usd(nano, text):
    assert money_display(nano) == text
    assert money_display(nano, "USD") == text


@pytest.mark.parametrize(
    ("nano", "currency", "text"),
    [
        (12 * NANO_PER_UNIT, "EUR", "€12.00"),
        (12 * NANO_PER_UNIT, "GBP", "£12.00"),
        (12 * NANO_PER_UNIT, "eur", "€12.00"),
        (12 * NANO_PER_UNIT, "CHF", "12.00 CHF"),  # no symbol: the code after the amount
        (-5, "CHF", "-0.000000005 CHF"),
        (1_500 * NANO_PER_UNIT, "usd", "$1,500.00"),
    ],
)
def test_other_currencies(nano, currency, text):
    assert money_display(nano, currency) == text


def _value(text: str) -> Decimal:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("-").lstrip("$").replace(",", "")
    return sign * Decimal(digits)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_exact_and_never_zero_when_not_zero(nano):
    text = money_display(nano)
    # Reads back as exactly the amount: nothing is rounded away.
    assert _value(text) * NANO_PER_UNIT == nano
    frac = text.partition(".")[2]
    # At least cents, at most nano-units, no trailing zero beyond the cents.
    assert 2 <= len(frac) <= 9
    assert len(frac) == 2 or not frac.endswith("0")
    if nano != 0:
        assert _value(text) != 0
    assert text.startswith("-$") == (nano < 0)
