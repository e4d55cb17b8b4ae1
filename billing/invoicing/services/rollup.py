"""The daily rollup: each UTC day's ledger movements, summed per wallet into the pieces of invoice lines
(DailyRollup), once the day and the close's grace window are over, so that closing a period sums a month of days
instead of reading a month of raw rows (journal, entries, draws, usage records) again.

It assumes what the close assumes: nothing is booked into a day after its grace window (the ledger books every
movement at its own statement's time; usage reported late is booked when it arrives, in a later day). The close
reads any day not rolled up yet (or not wholly inside its period) from the ledger itself, so a rollup that is late,
stopped or never run changes how fast a close is, never what it finds.
"""

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.invoicing import sql
from billing.invoicing.models import RollupDay
from billing.invoicing.selectors import periods_next

# The same memory as a close's batch: a busy day of every wallet is grouped in memory.
ROLLUP_WORK_MEM = "256MB"


def rollup_day(*, day: date) -> bool:
    """Roll up one UTC day for every wallet, and add it to its calendar month's sums (MonthRollup), in one
    transaction with its RollupDay row: True if this call did,
    False if the day was rolled up already (by an earlier run, or a concurrent one: the second waits for the first
    and then finds its row)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO invoicing_rollupday (day, rolled_at, rows, month_added) VALUES (%s, now(), 0, true) "
            "ON CONFLICT (day) DO NOTHING RETURNING day",
            [day],
        )
        if cursor.fetchone() is None:
            return False
        cursor.execute(f"SET LOCAL work_mem = '{ROLLUP_WORK_MEM}'")
        cursor.execute(sql.ROLLUP_INSERT, {"day": day, "lo": start, "hi": start + timedelta(days=1), "wallets": None})
        RollupDay.objects.filter(day=day).update(rows=cursor.rowcount)
        cursor.execute(sql.MONTH_ADD, {"day": day})
    return True


def rollup_days_due(*, now: datetime | None = None) -> list[date]:
    """The days to roll up, oldest first: from the day after the last one rolled up (on the first run: the first
    day of the earliest period still to close, so years of closed periods are not rolled up for nothing) to the
    last day whose grace window is over, at most INVOICE_ROLLUP_DAYS_PER_RUN of them."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.INVOICE_CLOSE_GRACE_SECONDS)
    last = (cutoff - timedelta(days=1)).astimezone(UTC).date()  # the last day wholly before the cutoff
    latest = RollupDay.objects.aggregate(latest=Max("day"))["latest"]
    if latest is not None:
        first = latest + timedelta(days=1)
    else:
        starts = [start for start, _ in periods_next().values()]
        if not starts:
            return []  # no wallet yet: nothing to roll up
        first = min(starts).astimezone(UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return days[: settings.INVOICE_ROLLUP_DAYS_PER_RUN]


def rollups_run(*, now: datetime | None = None) -> int:
    """Roll up the days that are due (see rollup_days_due); returns how many this call rolled up."""
    return sum(rollup_day(day=day) for day in rollup_days_due(now=now))
