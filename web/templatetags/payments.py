"""Template filters of the billing pages."""

from django import template

from billing.payments.selectors import money_display

register = template.Library()


@register.filter
def money(amount_nano: int | None, currency: str = "USD") -> str:
    """{{ top_up.amount_nano|money:top_up.currency }} -> "$20.00"."""
    return money_display(int(amount_nano or 0), currency or "USD")
