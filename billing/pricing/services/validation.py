"""Checks the pricing services share, raising ApplicationError (400) with the offending parameter named."""

from datetime import datetime
from typing import Any

from django.utils import timezone

from core.errors import ApplicationError

BPS = 10_000
# Bounds that keep every product of the rating arithmetic far inside PostgreSQL's bigint: $1,000,000 per
# million tokens, a billion dollars, a hundred trillion tokens.
MAX_PRICE_MICRO_PER_MTOK = 10**12
MAX_AMOUNT_NANO = 10**18
MAX_TOKENS = 10**14
# The furthest ahead a date may lie: further is a typo, and month arithmetic on it could leave the calendar
# (Python's dates end with year 9999).
MAX_YEARS_AHEAD = 100


def whole(value: Any, *, param: str, minimum: int = 0, maximum: int) -> int:
    """An int (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApplicationError(f"{param} must be a whole number.", param=param, code="invalid_value")
    if value < minimum:
        raise ApplicationError(
            f"{param} must be at least {minimum}." if minimum else f"{param} must be non-negative.",
            param=param,
            code="invalid_value",
        )
    if value > maximum:
        raise ApplicationError(f"{param} must be at most {maximum}.", param=param, code="invalid_value")
    return value


def price(value: Any, *, param: str) -> int:
    return whole(value, param=param, maximum=MAX_PRICE_MICRO_PER_MTOK)


def bps(value: Any, *, param: str, maximum: int = BPS) -> int:
    return whole(value, param=param, maximum=maximum)


def amount(value: Any, *, param: str) -> int:
    return whole(value, param=param, maximum=MAX_AMOUNT_NANO)


def tokens(value: Any, *, param: str, minimum: int = 0, maximum: int = MAX_TOKENS) -> int:
    return whole(value, param=param, minimum=minimum, maximum=maximum)


def moment(value: Any, *, param: str) -> datetime:
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise ApplicationError(f"{param} must be a date and time with a time zone.", param=param, code="invalid_value")
    if value.year > timezone.now().year + MAX_YEARS_AHEAD:
        raise ApplicationError(
            f"{param} must be at most {MAX_YEARS_AHEAD} years from now.", param=param, code="invalid_value"
        )
    return value


def text(value: Any, *, param: str, max_length: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ApplicationError(f"{param} must be a string.", param=param, code="invalid_value")
    value = value.strip()
    if required and not value:
        raise ApplicationError(f"{param} is required.", param=param, code="invalid_value")
    if len(value) > max_length:
        raise ApplicationError(f"{param} must be at most {max_length} characters.", param=param, code="invalid_value")
    return value
