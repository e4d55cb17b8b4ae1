"""Calendar arithmetic: months are counted in UTC whatever offset a moment is given at."""

from datetime import UTC, datetime, timedelta, timezone

from billing.pricing import periods


def test_add_months_counts_months_in_utc_for_a_moment_given_at_another_offset():
    plus_two = timezone(timedelta(hours=2))
    # Jan 31 00:00 at UTC+2 is Jan 30 22:00 UTC: one month on is Feb 28 22:00 UTC (Jan 30 clamped), not the
    # Feb 27 22:00 UTC that counting at UTC+2 (Jan 31 -> Feb 28 00:00 +02:00) would give.
    result = periods.add_months(datetime(2026, 1, 31, tzinfo=plus_two), 1)
    assert result == datetime(2026, 2, 28, 22, tzinfo=UTC)
    assert result.utcoffset() == timedelta(0)
    minus_three = timezone(timedelta(hours=-3))
    # Feb 28 23:00 at UTC-3 is Mar 1 02:00 UTC: a month on is Apr 1 02:00 UTC (at UTC-3 it would be Mar 28).
    assert periods.add_months(datetime(2026, 2, 28, 23, tzinfo=minus_three), 1) == datetime(2026, 4, 1, 2, tzinfo=UTC)
    assert periods.add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
