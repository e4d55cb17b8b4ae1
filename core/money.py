"""Money is an integer number of nano-units of its currency (1 USD = 1,000,000,000 nano-USD).

Prices are integer micro-units per million tokens ($0.15 / 1M tokens = 150_000), so the cost of one token in
nano-units is price_micro_per_mtok / 1000. Decimal appears only here, at the edges (parsing and display).
"""

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NANO_PER_UNIT = 1_000_000_000
# Minor units per main unit (cents). Invoices round to these once, at the end.
MINOR_UNITS = {"USD": 100, "EUR": 100, "GBP": 100}
# The largest amount accepted from a person in one operation: one billion main units.
MAX_AMOUNT_NANO = 10**9 * NANO_PER_UNIT


class AmountError(ValueError):
    """A decimal amount that cannot be money: malformed, negative, too precise or too large."""


# Plain decimal notation only: ASCII digits 0-9, an optional sign and point. No exponent ("1e999999" is eight
# characters and a million digits), no spaces inside, and short: the longest sensible amount has 10 + 1 + 9
# digits. Not \d: it (and Decimal) also reads Arabic-Indic, full-width and other digits, which nobody means
# to type into an amount.
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
MAX_DECIMAL_TEXT = 40


def decimal_parse(text: str) -> Decimal:
    """A Decimal from a person's decimal text; for anything else InvalidOperation("malformed") or
    InvalidOperation("too long")."""
    text = text.strip()
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidOperation("malformed")
    if len(text) > MAX_DECIMAL_TEXT:
        raise InvalidOperation("too long")
    return Decimal(text)


def parse_amount(value: str | int | Decimal, *, allow_zero: bool = False) -> int:
    """Parse a decimal amount in main units ("12.50") into nano-units, rejecting anything ambiguous."""
    if isinstance(value, float | bool):
        raise AmountError('amount must be a decimal string such as "12.50", not a float')
    try:
        dec = value if isinstance(value, Decimal) else decimal_parse(str(value))
    except InvalidOperation as exc:
        if exc.args == ("too long",):
            raise AmountError("amount has too many digits") from None
        raise AmountError(f'{str(value)[:40]!r} is not a decimal amount such as "12.50"') from None
    if not dec.is_finite():
        raise AmountError("amount must be a finite number")
    nano = dec * NANO_PER_UNIT
    if nano != nano.to_integral_value():
        raise AmountError("amount has more than 9 decimal places")
    result = int(nano)
    if result < 0 or (result == 0 and not allow_zero):
        raise AmountError("amount must be greater than zero")
    if result > MAX_AMOUNT_NANO:
        raise AmountError("amount is larger than 1,000,000,000")
    return result


def format_amount(amount_nano: int, *, places: int = 2) -> str:
    """Render nano-units as a decimal string in main units, e.g. 12_500_000_000 -> "12.50".

    `places` sets the minimum number of decimals; finer amounts keep their extra digits rather than being
    silently rounded (display of a sub-cent charge must not show "0.00" when it is not zero).
    """
    dec = Decimal(amount_nano) / NANO_PER_UNIT
    text = format(dec.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(places, "0")
    return f"{whole}.{frac}" if frac else whole


def round_to_minor(amount_nano: int, *, currency: str = "USD") -> int:
    """Round nano-units to the currency's minor unit (half up, away from zero), returning minor units."""
    per_minor = NANO_PER_UNIT // MINOR_UNITS.get(currency, 100)
    return int((Decimal(amount_nano) / per_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def token_cost_nano(tokens: int, price_micro_per_mtok: int) -> int:
    """Exact cost in nano-units of `tokens` at a per-million-token price, rounded up to a whole nano-unit.

    tokens * price_micro / 1e6 tokens * 1e3 nano/micro = tokens * price / 1000. Rounding up by less than one
    nano-unit (a billionth of a dollar) per line means the provider never under-charges by truncation.
    """
    return -((-tokens * price_micro_per_mtok) // 1000)


# Display symbols; a currency without one is written after the amount ("12.50 CHF").
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def money_display(amount_nano: int, currency: str = "USD") -> str:
    """How every page, email and JSON `*_display` field writes an amount: the one display rule.

    Exact, never rounded: whole cents show the currency's minor unit ("$20.00", "$0.50"); an amount finer than
    that shows as many decimals as it needs, up to nano-units, trailing zeros trimmed ("$0.00425",
    "$0.000000008"), so a non-zero amount never reads as zero. Thousands are grouped ("$1,234,567.50"); a negative
    amount reads "-$3.50". Machine-readable outputs (CSV, JSON amounts, command output) use format_amount instead.
    """
    code = currency.upper()
    places = len(str(MINOR_UNITS.get(code, 100))) - 1
    whole, _, frac = format_amount(abs(amount_nano), places=places).partition(".")
    body = f"{int(whole):,}" + (f".{frac}" if frac else "")
    symbol = CURRENCY_SYMBOLS.get(code)
    text = f"{symbol}{body}" if symbol else f"{body} {code}"
    return f"-{text}" if amount_nano < 0 else text
