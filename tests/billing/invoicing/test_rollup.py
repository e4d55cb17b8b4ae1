"""The daily rollup: a close that sums rolled-up days finds exactly the lines a close reading the raw ledger
finds; a day is summed once however often it is rolled up; usage booked after its day was rolled up is on the
invoice of the day it was booked in, never nowhere."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from billing.invoicing import explain, selectors, services, sql
from billing.invoicing.errors import InvoiceUnbalanced
from billing.invoicing.models import DailyRollup, InvoiceLine, MonthRollup, RollupDay
from billing.invoicing.selectors import lines_traced
from billing.invoicing.services.close import _calendar_month
from billing.invoicing.services.rollup import rollup_day, rollup_days_due, rollups_run
from billing.ledger.models import Wallet
from billing.usage.models import UsageRecord
from tests.billing.invoicing.conftest import at, booked_at, call, fund
from tests.billing.invoicing.test_close import NOV, OCT, lines_by, october

CLOSED = at("2026-11-01 01:00:01")


@pytest.fixture(autouse=True)
def _month_per_run(settings):
    settings.INVOICE_ROLLUP_DAYS_PER_RUN = 40


def _month(org):
    """October's calls (test_close.october) on the 5th, more on the 17th and the evening of the 31st."""
    october(org)
    with booked_at(at("2026-10-17 12:00")):
        fund(org, "0.01", kind="promotional")
        call(org, model="gpt-4o-mini", input_tokens=2000, output_tokens=100)
    with booked_at(at("2026-10-31 23:30")):
        call(org, model="gpt-4o", input_tokens=3000, output_tokens=300)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _lines(invoice):
    """An invoice's lines, each as everything it says (its whole trace, whether it names the ids itself or through
    rollup rows; in order: their order carries no meaning)."""
    return [
        (
            line.position,
            line.kind,
            line.description,
            line.model_id,
            line.price_version_id,
            line.token_kind,
            line.service_tier,
            line.source,
            line.quantity,
            line.unit,
            line.rate_micro_per_mtok,
            line.factor_bps,
            line.discount_bps,
            line.unit_price_nano,
            line.amount_nano,
            line.period_start,
            line.period_end,
            sorted(line.traced_usage_ids),
            sorted(line.traced_transaction_ids),
            sorted(line.traced_draw_ids),
        )
        for line in lines_traced(InvoiceLine.objects.filter(invoice=invoice).order_by("position"))
    ]


class _Undo(Exception):
    pass


def _close_and_undo(org):
    """Close October and return its lines and totals, then roll it all back (numbers included)."""
    try:
        with transaction.atomic(), time_machine.travel(CLOSED):
            invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
            seen = (_lines(invoice), invoice.charges_nano, invoice.credit_applied_nano, invoice.total_exact_nano)
            raise _Undo
    except _Undo:
        return seen


def test_a_close_over_rolled_up_days_finds_the_lines_a_close_over_the_raw_ledger_finds(org):
    _month(org)
    raw = _close_and_undo(org)
    # Every day but the last rolled up (its grace window ends with the period's: the close reads it raw) ...
    for day in _days(date(2026, 10, 1), date(2026, 10, 30)):
        assert rollup_day(day=day)
    assert DailyRollup.objects.filter(organization=org).exists()
    assert _close_and_undo(org) == raw
    # ... and every day of it rolled up.
    assert rollup_day(day=date(2026, 10, 31))
    assert _close_and_undo(org) == raw
    # The later days' usage added to the lines of the same keys (five usage lines, the plan fee, two credits).
    assert len(raw[0]) == 8
    quantities = {line[2]: line[8] for line in raw[0]}
    assert (quantities["gpt-4o default: input"], quantities["gpt-4o-mini default: output"]) == (163_000, 600)


def test_a_day_rolled_up_twice_is_summed_once(org):
    october(org)
    assert rollup_day(day=date(2026, 10, 5))
    rows = DailyRollup.objects.count()
    assert not rollup_day(day=date(2026, 10, 5))
    assert DailyRollup.objects.count() == rows
    with time_machine.travel(CLOSED):
        assert rollups_run() == 26  # the days after the 5th (the last rolled up): the 5th is left alone
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert RollupDay.objects.count() == 27
    assert lines_by(invoice)[("gpt-4o", "input")] == (160_000, 400_000_000)
    assert invoice.charges_nano == 750_450_000


def test_usage_booked_after_its_days_were_rolled_up_lands_on_the_next_invoice(org):
    october(org)
    with time_machine.travel(CLOSED):
        rollups_run()
    assert max(RollupDay.objects.values_list("day", flat=True)) == date(2026, 10, 31)
    with booked_at(at("2026-11-01 01:30")):  # reported late for October: booked when it arrived
        late = call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=0)
    with time_machine.travel(at("2026-12-01 01:00:01")):
        rollups_run()  # November's first days, the late call's among them
        first = services.invoice_close(organization_id=org.pk, period_start=OCT)
        second = services.invoice_close(organization_id=org.pk, period_start=NOV)
    assert RollupDay.objects.filter(day=date(2026, 11, 1)).exists()
    assert all(late.pk not in line.traced_usage_ids for line in lines_traced(first.lines.all()))
    assert [line.traced_usage_ids for line in lines_traced(second.lines.filter(kind="usage"))] == [[late.pk]]


def test_a_day_is_rolled_up_once_its_grace_window_is_over(org, settings):
    settings.INVOICE_CLOSE_GRACE_SECONDS = 3600
    assert rollup_days_due(now=CLOSED) == []  # no wallet yet
    october(org)  # its wallet opened on October's 5th: its first period to close is October
    assert rollup_days_due(now=at("2026-10-02 00:59:59")) == []
    assert rollup_days_due(now=at("2026-10-02 01:00:00")) == [date(2026, 10, 1)]
    settings.INVOICE_ROLLUP_DAYS_PER_RUN = 3
    assert rollup_days_due(now=CLOSED) == _days(date(2026, 10, 1), date(2026, 10, 3))
    with time_machine.travel(CLOSED):
        assert rollups_run() == 3
    assert rollup_days_due(now=CLOSED) == _days(date(2026, 10, 4), date(2026, 10, 6))


def test_a_period_cut_inside_a_day_reads_that_day_raw(org):
    """A progressive invoice cuts its period at any moment: the day it is cut in is read from the ledger on both
    sides of the cut, even when it is rolled up."""
    october(org)
    with booked_at(at("2026-10-17 18:00")):
        evening = call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=0)
    with time_machine.travel(CLOSED):
        rollups_run()
        cut = services.invoice_open(
            organization_id=org.pk, period_start=OCT, period_end=at("2026-10-17 12:00"), progressive=True
        )
        first = services.invoice_finalize(invoice_id=services.invoice_aggregate(invoice_id=cut.pk).pk)
        rest = services.invoice_open(organization_id=org.pk, period_start=first.period_end, period_end=NOV)
        second = services.invoice_finalize(invoice_id=services.invoice_aggregate(invoice_id=rest.pk).pk)
    assert first.charges_nano == 750_450_000
    assert [line.traced_usage_ids for line in lines_traced(second.lines.filter(kind="usage"))] == [[evening.pk]]


def test_a_line_over_rolled_up_days_names_their_rows_and_is_traced_explained_and_reconciled_through_them(org):
    _month(org)
    for day in _days(date(2026, 10, 1), date(2026, 10, 31)):
        assert rollup_day(day=day)
    with time_machine.travel(CLOSED):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    lines = list(lines_traced(InvoiceLine.objects.filter(invoice=invoice).order_by("position")))
    usage = [line for line in lines if line.kind == "usage"]
    # The month was read from the rollup alone: the lines copy no id, they name the rows that do.
    assert usage and all(line.rollup_ids and not line.usage_ids for line in usage)
    assert all(not line.draw_ids for line in lines if line.kind.startswith("credit_"))
    named = DailyRollup.objects.filter(id__in={pk for line in lines for pk in line.rollup_ids})
    assert {row.organization_id for row in named} == {org.pk}
    assert selectors.invoices_reconcile(organization_id=org.pk) == []
    records = set()
    for line in usage:
        assert line.traced_usage_ids
        for by in explain.BREAKDOWNS:
            groups = explain.line_breakdown(line=line, by=by)
            assert sum(g.amount_nano for g in groups) == line.amount_nano, (line.description, by)
            assert sum(g.tokens for g in groups) == line.quantity, (line.description, by)
        records |= set(line.traced_usage_ids)
    for record in UsageRecord.objects.filter(pk__in=records):
        place = explain.record_place(organization_id=org.pk, usage_id=record.pk, created_at=record.created_at)
        assert place.invoice == invoice
        assert {found.line_id for found in place.lines} == {
            line.pk for line in usage if record.pk in line.traced_usage_ids
        }


def test_a_rollup_row_an_invoice_may_name_never_changes_and_is_never_deleted(org):
    october(org)
    assert rollup_day(day=date(2026, 10, 5))
    row = DailyRollup.objects.filter(organization=org, kind="usage").first()
    assert row is not None
    with pytest.raises(IntegrityError, match="can never change"), transaction.atomic():
        DailyRollup.objects.filter(pk=row.pk).update(amount_nano=0)
    with pytest.raises(IntegrityError, match="can never change"), transaction.atomic():
        DailyRollup.objects.filter(pk=row.pk).delete()
    assert DailyRollup.objects.get(pk=row.pk).amount_nano == row.amount_nano


def test_each_month_sums_its_rolled_up_days_once_and_a_whole_month_is_closed_from_its_sums(org):
    _month(org)
    raw = _close_and_undo(org)
    for day in _days(date(2026, 10, 1), date(2026, 10, 31)):
        assert rollup_day(day=day)
    assert not rollup_day(day=date(2026, 10, 17))  # rolled up once: added to its month once
    days = {row.pk: row for row in DailyRollup.objects.filter(organization=org)}
    months = list(MonthRollup.objects.filter(organization=org))
    assert {month.month for month in months} == {date(2026, 10, 1)}
    # Every day's row is in exactly one month row, whose sums are its days'.
    assert sorted(pk for month in months for pk in month.rollup_ids) == sorted(days)
    for month in months:
        summed = [days[pk] for pk in month.rollup_ids]
        assert month.amount_nano == sum(row.amount_nano for row in summed)
        assert month.tokens == sum(row.tokens for row in summed)
        assert month.unfunded_nano == sum(row.unfunded_nano for row in summed)
        assert {(row.kind, row.model_id, row.token_kind, row.source, row.sort_key) for row in summed} == {
            (month.kind, month.model_id, month.token_kind, month.source, month.sort_key)
        }
    # The whole month is closed from its sums: the same lines, naming the same day rows.
    assert _close_and_undo(org) == raw
    # ... read from them indeed: a month's sums that disagree with the ledger leave the invoice unbuilt.
    usage = next(month for month in months if month.kind == "usage")
    MonthRollup.objects.filter(pk=usage.pk).update(amount_nano=usage.amount_nano + 1)
    with time_machine.travel(CLOSED), pytest.raises(InvoiceUnbalanced):
        services.invoice_close(organization_id=org.pk, period_start=OCT)
    # A day rolled up but not added to its month (by the code before MonthRollup, during its deploy): the month is
    # summed from its days again, and its sums are not read.
    RollupDay.objects.filter(day=date(2026, 10, 17)).update(month_added=False)
    with time_machine.travel(CLOSED):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert (_lines(invoice), invoice.charges_nano, invoice.credit_applied_nano, invoice.total_exact_nano) == raw
    with pytest.raises(IntegrityError, match="never deleted"), transaction.atomic():
        MonthRollup.objects.filter(pk=usage.pk).delete()
    MonthRollup.objects.filter(pk=usage.pk).update(amount_nano=usage.amount_nano)  # as the autouse check expects


def _rolled_up(org):
    """October's calls (_month), every day of it rolled up and added to its month."""
    _month(org)
    for day in _days(date(2026, 10, 1), date(2026, 10, 31)):
        assert rollup_day(day=day)


@pytest.mark.parametrize(
    ("start", "end", "whole"),
    [
        (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), True),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), True),
        (datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC), True),
        # The same instant written at another offset is the same month.
        (datetime(2026, 10, 1, 2, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 11, 1, tzinfo=UTC), True),
        # A period on another anchor day, cut inside a day, shorter or longer than its month: read from the days.
        (datetime(2026, 10, 15, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC), False),
        (datetime(2026, 10, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), False),
        (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC), False),
        (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), False),
    ],
)
def test_only_a_whole_utc_calendar_month_is_closed_from_its_months_sums(start, end, whole):
    assert _calendar_month(start, end) is whole


def test_the_reconcile_check_finds_a_month_row_that_is_not_the_sum_of_its_days(org):
    _rolled_up(org)
    assert selectors.invoices_reconcile(organization_id=org.pk) == []
    usage = MonthRollup.objects.filter(organization=org, kind="usage").order_by("id").first()
    assert usage is not None
    MonthRollup.objects.filter(pk=usage.pk).update(amount_nano=usage.amount_nano + 1)
    assert selectors.invoices_reconcile(organization_id=org.pk) == [
        f"month rollup 2026-10 (row {usage.pk}): amount_nano {usage.amount_nano + 1} is not its days' sum "
        f"{usage.amount_nano}"
    ]


def test_the_reconcile_check_finds_a_day_row_not_summed_once_in_its_month(org):
    _rolled_up(org)
    seventeenth = date(2026, 10, 17)
    # A row written for a day already added to its month, and never added.
    stray = DailyRollup.objects.create(
        day=seventeenth, organization=org, wallet=Wallet.objects.get(organization=org), kind="charge", amount_nano=7
    )
    assert selectors.invoices_reconcile(organization_id=org.pk) == [
        f"month rollup 2026-10: day row {stray.pk} of 2026-10-17 is summed in no month row"
    ]
    # The day added to its month a second time: every sum still adds up to the rows named, but the day's rows are
    # summed twice (the stray row, added with them, once).
    with connection.cursor() as cursor:
        cursor.execute(sql.MONTH_ADD, {"day": seventeenth})
    twice = DailyRollup.objects.filter(organization=org, day=seventeenth).exclude(pk=stray.pk)
    assert twice.exists()
    assert sorted(selectors.invoices_reconcile(organization_id=org.pk)) == sorted(
        [f"month rollup 2026-10: day row {row.pk} of 2026-10-17 is summed 2 times" for row in twice]
    )


@pytest.mark.django_db(transaction=True)
def test_the_migration_sums_the_days_rolled_up_before_it_into_their_months():
    before = [("invoicing", "0011_line_rollup_trace")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    org = old.get_model("accounts", "Organization").objects.create(name="Org")
    Day = old.get_model("invoicing", "DailyRollup")

    def day(on: date, kind: str, amount: int, tokens: int = 0, unfunded: int = 0) -> int:
        row = Day.objects.create(
            day=on, organization=org, kind=kind, token_kind="input" if kind == "usage" else "",
            tokens=tokens, requests=1, amount_nano=amount, unfunded_nano=unfunded,
        )  # fmt: skip
        return row.pk

    third = day(date(2026, 10, 3), "usage", 10, tokens=100)
    fourth = day(date(2026, 10, 4), "usage", 5, tokens=50)
    ledger = day(date(2026, 10, 4), "ledger", 15, unfunded=3)
    november = day(date(2026, 11, 1), "usage", 7, tokens=70)
    rolled = old.get_model("invoicing", "RollupDay")
    for on in (date(2026, 10, 3), date(2026, 10, 4), date(2026, 11, 1)):
        rolled.objects.create(day=on)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    months = MonthRollup.objects.filter(organization_id=org.pk).order_by("month", "kind")
    assert [(m.month, m.kind, m.tokens, m.requests, m.amount_nano, m.unfunded_nano, m.rollup_ids) for m in months] == [
        (date(2026, 10, 1), "ledger", 0, 1, 15, 3, [ledger]),
        (date(2026, 10, 1), "usage", 150, 2, 15, 0, [third, fourth]),
        (date(2026, 11, 1), "usage", 70, 1, 7, 0, [november]),
    ]
    assert list(RollupDay.objects.values_list("month_added", flat=True).distinct()) == [True]
