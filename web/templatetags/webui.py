"""Filters for the customer pages: `{{ amount_nano|money:currency }}`, `{{ n|tokens }}`, ..."""

from django import template

from core.money import money_display
from web import formatting

register = template.Library()


@register.filter
def money(amount_nano: int | None, currency: str = "USD") -> str:
    """The one display rule for amounts (core.money.money_display): "$20.00", "$0.00425", "-$3.50"."""
    return money_display(int(amount_nano or 0), currency or "USD")


@register.filter
def price_per_mtok(price_micro_per_mtok: int | None, currency: str = "USD") -> str:
    return formatting.price_per_mtok(int(price_micro_per_mtok or 0), currency or "USD")


@register.filter
def tokens(value: int | None) -> str:
    """Thousands separators: 1234567 -> "1,234,567"."""
    return f"{int(value or 0):,}"


@register.filter
def tokens_compact(value: int | None) -> str:
    return formatting.tokens_compact(int(value or 0))


@register.filter
def percent_bps(value: int | None) -> str:
    """Basis points as a percentage: 2500 -> "25%", 1250 -> "12.5%"."""
    whole, rest = divmod(int(value or 0), 100)
    return f"{whole}%" if not rest else f"{whole}.{rest:02d}".rstrip("0") + "%"
