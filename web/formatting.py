"""How prices, chart labels and token counts read on the customer pages. Display only: exact integers come in,
text goes out. Amounts themselves follow the one rule of core.money.money_display (exact, never rounded);
only the chart axes' short labels round."""

from decimal import ROUND_HALF_UP, Decimal

from core.money import CURRENCY_SYMBOLS, NANO_PER_UNIT, money_display

# The finest amount money_compact tells apart (four decimals of the main unit), in nano-units.
MONEY_COMPACT_RESOLUTION_NANO = NANO_PER_UNIT // 10_000


def money_compact(amount_nano: int, currency: str = "USD") -> str:
    """Short labels for chart axes: "$0", "$0.05", "$12", "$1.2k"."""
    value = Decimal(amount_nano) / NANO_PER_UNIT
    symbol = CURRENCY_SYMBOLS.get(currency, "")
    suffix = "" if symbol else f" {currency}"
    if value >= 1000:
        return f"{symbol}{_compact_number(int(value))}{suffix}"
    if value >= 10 or value == 0:
        text = format(value.quantize(Decimal(1), rounding=ROUND_HALF_UP), "f")
    else:
        text = format(value.normalize(), "f")
        if "." in text and len(text.partition(".")[2]) > 4:
            text = format(value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize(), "f")
    return f"{symbol}{text}{suffix}"


def _compact_number(value: int) -> str:
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(value) >= size:
            scaled = (Decimal(value) / size).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            return f"{scaled.normalize():f}{unit}"
    return str(value)


def tokens_compact(value: int) -> str:
    """12_345_678 -> "12.3M"."""
    return _compact_number(value)


def price_per_mtok(price_micro_per_mtok: int, currency: str = "USD") -> str:
    """A per-million-token price in micro-units as money: 2_500_000 -> "$2.50", 75_000 -> "$0.075"."""
    return money_display(price_micro_per_mtok * 1000, currency)


# A cell starting with one of these is a formula to a spreadsheet; key names, workflow tags and line descriptions
# are typed by people, so such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
