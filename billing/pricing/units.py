"""Prices as people write them: decimal strings per million tokens ("2.50") <-> integer micro-units per million
tokens (2_500_000). Decimal appears only here, at the edge."""

from decimal import Decimal, InvalidOperation

from core.money import decimal_parse

MICRO = 1_000_000
# $1,000,000 per million tokens: far above any real price, far below what the arithmetic can hold.
MAX_PRICE_MICRO = 10**12


class PriceError(ValueError):
    """A price that cannot be read: malformed, negative, too precise or too large."""


def price_parse(text: object) -> int:
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise PriceError("a price must be a string")
    try:
        value = decimal_parse(str(text))
    except InvalidOperation as exc:
        if exc.args == ("too long",):
            raise PriceError("a price has too many digits") from None
        raise PriceError(f"{str(text)[:40]!r} is not a decimal number") from None
    if not value.is_finite():
        raise PriceError("a price must be a finite number")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise PriceError("a price has at most 6 decimal places")
    if micro < 0:
        raise PriceError("a price cannot be negative")
    if micro > MAX_PRICE_MICRO:
        raise PriceError("a price is at most 1000000 per million tokens")
    return int(micro)


def price_format(micro_per_mtok: int) -> str:
    text = format((Decimal(micro_per_mtok) / MICRO).normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"
