"""Calendar arithmetic for billing periods (UTC). Pure functions of their arguments.

Monthly periods step from an anchor: the n-th boundary is the anchor plus n months, with the day clamped to
the month's length (anchored on Jan 31: Feb 28 or 29, then Mar 31), so periods never drift.
"""

import calendar
from datetime import UTC, datetime, timedelta

MONTHS = {"month": 1, "year": 12}


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole months, counted in UTC (an aware moment at another offset is converted first, so the
    day clamping and the result do not depend on the offset it was given in)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def months_between(start: datetime, end: datetime) -> int:
    """Whole anchored months from `start` to `end` (the largest n with add_months(start, n) <= end)."""
    n = (end.year - start.year) * 12 + end.month - start.month
    while n > 0 and add_months(start, n) > end:
        n -= 1
    while add_months(start, n + 1) <= end:
        n += 1
    return n


def anchored_period(anchor: datetime, step_months: int, at: datetime) -> tuple[datetime, datetime]:
    """The period [start, end) of `step_months` months, counted from `anchor`, that contains `at` (>= anchor)."""
    n = months_between(anchor, at) // step_months
    return add_months(anchor, n * step_months), add_months(anchor, (n + 1) * step_months)


def month_start(at: datetime) -> datetime:
    """The first instant of `at`'s calendar month in UTC."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def calendar_month(at: datetime) -> tuple[datetime, datetime]:
    start = month_start(at)
    return start, add_months(start, 1)


def is_month_start(at: datetime) -> bool:
    return at == month_start(at)


def fraction_remaining(start: datetime, end: datetime, at: datetime) -> tuple[int, int]:
    """(remaining, length) of the period in microseconds: prorations multiply by remaining // length."""
    length = _micros(end - start)
    remaining = min(max(_micros(end - at), 0), length)
    return remaining, length


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def prorate(amount: int, remaining: int, length: int) -> int:
    """amount x remaining / length, rounded down (integers only)."""
    return amount * remaining // length
