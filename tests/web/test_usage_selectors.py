"""The dashboard's and usage page's aggregations against hand-made usage records."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.services import apikey_create
from billing.pricing.models import AIModel
from billing.usage import selectors
from billing.usage.selectors import UsageFilter
from core.money import NANO_PER_UNIT
from tests.web.conftest import record

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CENT = NANO_PER_UNIT // 100


def march(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def window(org, first: int, last: int, **filters) -> UsageFilter:
    start, end = selectors.day_range(first=date(2026, 3, first), last=date(2026, 3, last))
    return UsageFilter(organization_id=org.pk, start=start, end=end, **filters)


@pytest.fixture
def keys(org_a, book):
    return (
        apikey_create(organization_id=org_a.pk, name="backend")[0],
        apikey_create(organization_id=org_a.pk, name="batch")[0],
    )


def test_day_range_is_half_open_over_utc_days():
    start, end = selectors.day_range(first=date(2026, 3, 1), last=date(2026, 3, 3))
    assert (start, end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))


class TestBurnRate:
    def test_spend_over_the_last_seven_days_divided_by_seven(self, org_a, book):
        record(org_a, at=NOW - timedelta(days=1), charge_nano=700 * CENT)
        record(org_a, at=NOW - timedelta(days=6, hours=23), charge_nano=700 * CENT)
        # Outside the window: exactly 7 days ago is in, anything earlier is out; so is anything after now.
        record(org_a, at=NOW - timedelta(days=7, seconds=1), charge_nano=10_000 * CENT)
        record(org_a, at=NOW + timedelta(seconds=1), charge_nano=10_000 * CENT)
        burn = selectors.burn_rate(organization_id=org_a.pk, available_nano=50 * NANO_PER_UNIT, now=NOW)
        assert burn.spend_nano == 14 * NANO_PER_UNIT
        assert burn.per_day_nano == 2 * NANO_PER_UNIT
        assert burn.runway_days == Decimal("25.0")

    def test_runway_rounds_down_to_a_tenth_of_a_day(self, org_a, book):
        record(org_a, at=NOW - timedelta(hours=1), charge_nano=3 * NANO_PER_UNIT)
        burn = selectors.burn_rate(organization_id=org_a.pk, available_nano=10 * NANO_PER_UNIT, now=NOW)
        # 10 / (3 / 7) = 23.333...
        assert burn.runway_days == Decimal("23.3")
        assert burn.per_day_nano == 3 * NANO_PER_UNIT // 7

    def test_no_spend_means_no_runway_and_no_credit_means_zero(self, org_a, book):
        assert selectors.burn_rate(organization_id=org_a.pk, available_nano=10, now=NOW).runway_days is None
        record(org_a, at=NOW - timedelta(hours=1), charge_nano=CENT)
        assert selectors.burn_rate(organization_id=org_a.pk, available_nano=0, now=NOW).runway_days == 0
        assert selectors.burn_rate(organization_id=org_a.pk, available_nano=-5, now=NOW).runway_days == 0

    def test_other_organizations_spend_is_not_counted(self, org_a, org_b, book):
        record(org_b, at=NOW - timedelta(hours=1), charge_nano=CENT)
        assert selectors.burn_rate(organization_id=org_a.pk, available_nano=10, now=NOW).spend_nano == 0


class TestDaily:
    def test_groups_by_utc_day_and_model(self, org_a, book):
        record(org_a, at=march(1, 0, 0), model="gpt-4o", input_tokens=10, output_tokens=5, charge_nano=3)
        record(org_a, at=march(1, 23, 59), model="gpt-4o", input_tokens=20, output_tokens=5, charge_nano=4)
        record(org_a, at=march(1, 8), model="gpt-4o-mini", input_tokens=1, output_tokens=1, charge_nano=1)
        record(org_a, at=march(2, 0, 0), model="gpt-4o", input_tokens=7, output_tokens=0, charge_nano=2)
        rows = selectors.usage_daily(filters=window(org_a, 1, 2), by="model")
        got = [(r.day, r.group, r.requests, r.tokens, r.charge_nano) for r in rows]
        assert got == [
            (date(2026, 3, 1), "gpt-4o", 2, 40, 7),
            (date(2026, 3, 1), "gpt-4o-mini", 1, 2, 1),
            (date(2026, 3, 2), "gpt-4o", 1, 7, 2),
        ]

    def test_groups_by_key_including_usage_without_a_key(self, org_a, keys):
        backend, batch = keys
        record(org_a, at=march(3), key=backend, charge_nano=5)
        record(org_a, at=march(3), key=backend, charge_nano=6)
        record(org_a, at=march(3), key=batch, charge_nano=7)
        record(org_a, at=march(3), key=None, charge_nano=8)
        rows = selectors.usage_daily(filters=window(org_a, 3, 3), by="key")
        by_group = {r.group: (r.label, r.charge_nano) for r in rows}
        assert by_group[str(backend.pk)] == (f"backend ({backend.key_id[:6]}…)", 11)
        assert by_group[str(batch.pk)][1] == 7
        assert by_group[""] == ("(no key)", 8)

    def test_groups_by_workflow(self, org_a, book):
        record(org_a, at=march(4), workflow="support-bot", charge_nano=1)
        record(org_a, at=march(4), workflow="support-bot", charge_nano=2)
        record(org_a, at=march(4), workflow="", charge_nano=4)
        rows = selectors.usage_daily(filters=window(org_a, 4, 4), by="workflow")
        assert {(r.label, r.charge_nano) for r in rows} == {("support-bot", 3), ("(untagged)", 4)}

    def test_the_range_is_half_open_and_other_organizations_are_excluded(self, org_a, org_b, book):
        record(org_a, at=march(5, 0, 0), charge_nano=1)
        record(org_a, at=march(6, 0, 0), charge_nano=100)  # the first instant after the range
        record(org_a, at=march(4, 23, 59), charge_nano=100)
        record(org_b, at=march(5), charge_nano=100)
        rows = selectors.usage_daily(filters=window(org_a, 5, 5), by="model")
        assert [(r.day, r.charge_nano) for r in rows] == [(date(2026, 3, 5), 1)]

    def test_filters_by_model_key_and_workflow(self, org_a, keys):
        backend, batch = keys
        record(org_a, at=march(7), model="gpt-4o", key=backend, workflow="a", charge_nano=1)
        record(org_a, at=march(7), model="gpt-4o", key=batch, workflow="a", charge_nano=10)
        record(org_a, at=march(7), model="gpt-4o-mini", key=backend, workflow="a", charge_nano=100)
        record(org_a, at=march(7), model="gpt-4o", key=backend, workflow="", charge_nano=1000)
        gpt4o = AIModel.objects.get(slug="gpt-4o").pk

        def total(**filters):
            return selectors.usage_totals(filters=window(org_a, 7, 7, **filters)).charge_nano

        assert total() == 1111
        assert total(model_id=gpt4o) == 1011
        assert total(api_key_id=backend.pk) == 1101
        assert total(workflow="a") == 111
        assert total(workflow="") == 1000
        assert total(model_id=gpt4o, api_key_id=backend.pk, workflow="a") == 1
        daily = selectors.usage_daily(filters=window(org_a, 7, 7, api_key_id=batch.pk), by="model")
        assert [r.charge_nano for r in daily] == [10]


def test_totals(org_a, book):
    record(org_a, at=march(8), input_tokens=100, cached_input_tokens=40, output_tokens=10, charge_nano=5)
    record(org_a, at=march(8), input_tokens=1, cached_input_tokens=0, output_tokens=2, charge_nano=6)
    totals = selectors.usage_totals(filters=window(org_a, 8, 8))
    assert (totals.requests, totals.input_tokens, totals.cached_input_tokens, totals.output_tokens) == (2, 101, 40, 12)
    assert (totals.total_tokens, totals.charge_nano) == (113, 11)
    empty = selectors.usage_totals(filters=window(org_a, 9, 9))
    assert (empty.requests, empty.charge_nano) == (0, 0)


def test_daily_is_one_query_whatever_the_number_of_rows(org_a, book, django_assert_num_queries):
    for day in range(1, 11):
        for _ in range(3):
            record(org_a, at=march(day))
    with django_assert_num_queries(1):
        rows = selectors.usage_daily(filters=window(org_a, 1, 10), by="model")
    assert len(rows) == 10


def test_recent_is_newest_first_and_limited(org_a, book):
    for minute in range(5):
        record(org_a, at=march(1, 12, minute), charge_nano=minute)
    assert [r.charge_nano for r in selectors.usage_recent(organization_id=org_a.pk, limit=3)] == [4, 3, 2]


def test_export_batches_resume_after_the_last_row_even_with_equal_times(org_a, org_b, book):
    # Seven rows, three of them at the same instant, read three at a time: every row once, oldest first.
    same = march(2, 9)
    made = [record(org_a, at=march(1, 9, m)) for m in range(2)]
    made += [record(org_a, at=same) for _ in range(3)]
    made += [record(org_a, at=march(3, 9, m)) for m in range(2)]
    record(org_a, at=march(20))  # outside the range
    record(org_b, at=same)  # another organization's
    batches = list(selectors.usage_export_batches(filters=window(org_a, 1, 3), batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    ids = [row[0] for batch in batches for row in batch]
    assert ids == [r.pk for r in sorted(made, key=lambda r: (r.created_at, r.pk))]


def test_workflows_seen_recently(org_a, book):
    record(org_a, at=NOW - timedelta(days=1), workflow="b")
    record(org_a, at=NOW - timedelta(days=1), workflow="a")
    record(org_a, at=NOW - timedelta(days=1), workflow="a")
    record(org_a, at=NOW - timedelta(days=100), workflow="old")
    record(org_a, at=NOW - timedelta(days=1), workflow="")
    assert selectors.usage_workflows(organization_id=org_a.pk, since=NOW - timedelta(days=90)) == ["a", "b"]
