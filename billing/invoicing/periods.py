"""Billing periods: months starting on the organization's anchor day at 00:00 UTC. Pure functions."""

from datetime import UTC, datetime

from billing.pricing.periods import add_months


def period_containing(*, anchor_day: int, at: datetime) -> tuple[datetime, datetime]:
    """The period [start, end) that contains `at`, for periods starting on `anchor_day` (1..28) of each month."""
    at = at.astimezone(UTC)
    start = datetime(at.year, at.month, anchor_day, tzinfo=UTC)
    if at < start:
        start = add_months(start, -1)
    return start, add_months(start, 1)


def period_after(*, anchor_day: int, end: datetime) -> tuple[datetime, datetime]:
    """The period that follows one ending at `end`: it starts there and ends at the next anchor boundary (shorter
    than a month only when staff moved the anchor day)."""
    _, next_end = period_containing(anchor_day=anchor_day, at=end)
    return end, next_end


def period_parse(text: str, *, anchor_day: int = 1) -> datetime:
    """The start of the period named "YYYY-MM" (the one starting in that month); ValueError if malformed."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return datetime(year, month, anchor_day, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a period such as 2026-03") from None
