"""Money at the edges: decimal text in, integer nano-units out."""

import pytest

from core.money import AmountError, format_amount, parse_amount, round_to_minor, token_cost_nano


@pytest.mark.parametrize(
    ("text", "nano"),
    [("12.50", 12_500_000_000), ("0.000000001", 1), (".5", 500_000_000), ("5.", 5_000_000_000), (" 7 ", 7 * 10**9)],
)
def test_decimal_text_becomes_nano_units(text, nano):
    assert parse_amount(text) == nano


@pytest.mark.parametrize("text", ["1e999999", "1e999990", "1E3", "1_000", " 1 2", "0x10", "NaN", "Infinity", "9" * 41])
def test_only_plain_short_decimals_are_amounts(text):
    """Exponents would let eight characters cost a million-digit integer; everything else is ambiguous."""
    with pytest.raises(AmountError):
        parse_amount(text)


@pytest.mark.parametrize("text", ["-1", "0", "0.0000000001", "1000000000.000000001", 1.5, True])
def test_negative_zero_too_precise_too_large_and_floats_are_refused(text):
    with pytest.raises(AmountError):
        parse_amount(text)


def test_display_keeps_sub_cent_digits_and_rounding_is_half_up_once():
    assert format_amount(12_500_000_000) == "12.50"
    assert format_amount(1) == "0.000000001"
    assert round_to_minor(5_000_000) == 1  # half a cent rounds up
    assert round_to_minor(4_999_999) == 0
    assert token_cost_nano(1, 1) == 1  # a fraction of a nano-unit is charged as one


def test_token_cost_is_exact_and_only_a_remainder_rounds_up():
    """tokens * price_micro_per_mtok / 1000 nano-units: a formula off by the divisor fails here, not only at 1x1."""
    assert token_cost_nano(1_000_000, 150_000) == 150_000_000  # 1M tokens at $0.15 / 1M tokens = $0.15
    assert token_cost_nano(1_000, 150_000) == 150_000
    assert token_cost_nano(0, 150_000) == 0
    assert token_cost_nano(1_001, 1) == 2  # 1.001 nano-units
    assert token_cost_nano(3, 333) == 1  # 0.999 nano-units


def test_rounding_to_cents_is_half_away_from_zero():
    assert round_to_minor(12_345_000_000) == 1235  # 12.345 -> 12.35
    assert round_to_minor(-5_000_000) == -1  # a half cent owed rounds away from zero, like one due
    assert round_to_minor(-4_999_999) == 0
