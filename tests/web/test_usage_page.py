"""/usage/ (filters, table, charts) and /usage/export.csv (content, streaming)."""

import csv
import io
import threading
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import apikey_create
from billing.usage import selectors as usage_selectors
from billing.usage.models import UsageRecord
from tests.web.conftest import client_for, record


def csv_rows(response) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


class TestPage:
    def test_defaults_to_the_last_30_days(self, as_vera, org_a, book):
        now = timezone.now()
        record(org_a, at=now - timedelta(hours=1), charge_nano=10**9)
        record(org_a, at=now - timedelta(days=31), charge_nano=5 * 10**9)
        response = as_vera.get("/usage/")
        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-testid="total-requests">1<' in page
        assert 'data-testid="total-spend">$1.00<' in page
        today = now.date()
        assert f'value="{(today - timedelta(days=29)).isoformat()}"' in page and f'value="{today.isoformat()}"' in page
        # The export link carries the same filters.
        assert f"/usage/export.csv?start={(today - timedelta(days=29)).isoformat()}&amp;end={today.isoformat()}" in page

    def test_reasoning_and_drift_are_shown(self, as_vera, org_a, book):
        now = timezone.now()
        record(org_a, at=now - timedelta(hours=1), output_tokens=700, reasoning_tokens=654, drift_flagged=True)
        record(org_a, at=now - timedelta(hours=2), output_tokens=50)
        page = as_vera.get("/usage/").content.decode()
        assert "<dt>Of which reasoning</dt><dd>654</dd>" in page
        assert '<td class="num">654</td>' in page
        assert page.count('<span class="badge warn" title="The count billed differs') == 1

    def test_filters_and_chart_grouping(self, as_vera, org_a, book):
        key = apikey_create(organization_id=org_a.pk, name="etl-key")[0]
        day = datetime(2026, 2, 10, 12, tzinfo=UTC)
        record(org_a, at=day, model="gpt-4o", key=key, workflow="etl", charge_nano=2 * 10**9)
        record(org_a, at=day, model="gpt-4o-mini", workflow="chat", charge_nano=3 * 10**9)
        params = {"start": "2026-02-01", "end": "2026-02-28"}
        assert 'total-spend">$5.00<' in as_vera.get("/usage/", params).content.decode()
        for extra, total in (
            ({"model": "gpt-4o"}, "$2.00"),
            ({"key": key.pk}, "$2.00"),
            ({"workflow": "chat"}, "$3.00"),
            ({"workflow": "(untagged)"}, "$0.00"),
        ):
            page = as_vera.get("/usage/", {**params, **extra}).content.decode()
            assert f'total-spend">{total}<' in page, extra
        by_key = as_vera.get("/usage/", {**params, "by": "key"}).content.decode()
        assert "Spend per day by API key" in by_key and "(no key)" in by_key and "etl-key (" in by_key

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"start": "2026-02-10", "end": "2026-02-01"}, "The end date must be on or after the start date."),
            ({"start": "yesterday"}, "Enter a valid date."),
            ({"start": "2020-01-01", "end": "2026-01-01"}, "Choose at most 366 days."),
            ({"model": "no-such-model"}, "Select a valid choice"),
            ({"key": "abc"}, "Select a valid choice"),
            ({"by": "colour"}, "Select a valid choice"),
            ({"workflow": "x" * 101}, "at most 100 characters"),
        ],
    )
    def test_bad_filters_get_a_message(self, as_vera, book, params, message):
        response = as_vera.get("/usage/", params)
        assert response.status_code == 400
        assert message in response.content.decode()

    def test_pages_of_50_newest_first(self, as_vera, org_a, book):
        start = timezone.now() - timedelta(hours=2)
        for n in range(55):
            record(org_a, at=start + timedelta(seconds=n), input_tokens=1000 + n)
        first = as_vera.get("/usage/").content.decode()
        assert "1,054" in first and "1,004" not in first and "Page 1 of 2" in first
        second = as_vera.get("/usage/", {"page": 2}).content.decode()
        assert "1,004" in second and "1,000" in second and "1,054" not in second

    def test_queries_do_not_grow_with_rows(self, as_vera, org_a, book):
        key = apikey_create(organization_id=org_a.pk, name="k")[0]

        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert as_vera.get("/usage/").status_code == 200
            return len(captured)

        now = timezone.now()
        record(org_a, at=now - timedelta(hours=1), key=key)
        few = queries()
        for n in range(40):
            record(org_a, at=now - timedelta(days=n % 20, hours=1), key=key if n % 2 else None, workflow=f"w{n % 3}")
        assert queries() == few


class TestCsv:
    def test_content(self, as_vera, org_a, book):
        key = apikey_create(organization_id=org_a.pk, name="=cmd|' /C calc'!A0")[0]
        at = datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
        made = record(
            org_a,
            at=at,
            model="gpt-4o",
            key=key,
            workflow="support",
            input_tokens=1200,
            cached_input_tokens=200,
            output_tokens=300,
            reasoning_tokens=120,
            drift_flagged=True,
            charge_nano=4_250_000,
        )
        record(org_a, at=at + timedelta(days=1), model="gpt-4o-mini", charge_nano=1)
        record(org_a, at=datetime(2026, 3, 1, tzinfo=UTC))  # after the range
        response = as_vera.get("/usage/export.csv", {"start": "2026-02-01", "end": "2026-02-28"})
        assert response.status_code == 200
        assert response["Content-Disposition"] == 'attachment; filename="usage-20260201-20260228.csv"'
        rows = csv_rows(response)
        assert len(rows) == 2
        assert rows[0] == {
            "created_at": "2026-02-03T04:05:06.789000Z",
            "request_id": made.request_id,
            "api_key_id": key.key_id,
            # A name that a spreadsheet would run as a formula is neutralised.
            "api_key_name": "'=cmd|' /C calc'!A0",
            "workflow": "support",
            "model": "gpt-4o",
            "endpoint": "chat",
            "service_tier": "default",
            "status": "ok",
            "source": "gateway",
            "input_tokens": "1200",
            "cached_input_tokens": "200",
            "output_tokens": "300",
            "reasoning_tokens": "120",
            "total_tokens": "1500",
            "charge": "0.00425",
            "charge_nano": "4250000",
            "currency": "USD",
            "price_version_id": "",
            "latency_ms": "0",
            "drift_flagged": "true",
        }
        assert (rows[1]["model"], rows[1]["api_key_id"], rows[1]["charge"], rows[1]["charge_nano"]) == (
            "gpt-4o-mini",
            "",
            "0.000000001",
            "1",
        )

    def test_filters_apply_and_other_organizations_rows_never_appear(self, org_a, org_b, alice, book):
        at = datetime(2026, 2, 3, tzinfo=UTC)
        record(org_a, at=at, workflow="a")
        record(org_a, at=at, workflow="b")
        record(org_b, at=at, workflow="a")
        response = client_for(alice).get(
            "/usage/export.csv", {"start": "2026-02-01", "end": "2026-02-28", "workflow": "a"}
        )
        rows = csv_rows(response)
        assert [r["workflow"] for r in rows] == ["a"]

    def test_a_long_range_streams_in_batches_and_has_every_row(self, as_vera, org_a, book, settings):
        settings.USAGE_EXPORT_BATCH_ROWS = 100
        start = datetime(2024, 1, 1, tzinfo=UTC)
        first = record(org_a, at=start, input_tokens=0)
        bulk_usage(org_a, model_id=first.model_id, count=999, start=start, step=timedelta(hours=7))
        with CaptureQueriesContext(connection) as captured:
            response = as_vera.get("/usage/export.csv", {"start": "2024-01-01", "end": "2025-12-31"})
            chunks = list(response.streaming_content)
        # A header chunk, then one chunk per batch of 100 rows, each read by its own bounded query.
        assert len(chunks) == 1 + 10
        batch_queries = [q["sql"] for q in captured.captured_queries if "usage_usagerecord" in q["sql"]]
        # (an 11th finds nothing after the last full batch)
        assert len(batch_queries) == 11 and all("LIMIT 100" in sql for sql in batch_queries)
        rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
        assert [int(r["input_tokens"]) for r in rows] == list(range(1000))
        assert len({r["request_id"] for r in rows}) == 1000

    def test_bad_filters_get_a_message(self, as_vera):
        response = as_vera.get("/usage/export.csv", {"start": "2026-02-10", "end": "2026-02-01"})
        assert response.status_code == 400
        assert "end date must be on or after" in response.content.decode()
        response = as_vera.get("/usage/export.csv", {"start": "2000-01-01", "end": "2026-02-01"})
        assert response.status_code == 400 and "at most 3660 days" in response.content.decode()


def bulk_usage(org, *, model_id: int, count: int, start: datetime, step: timedelta) -> None:
    """`count` more records after `start`, numbered 1.. in input_tokens."""
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                organization=org,
                request_id=f"bulk-{n}",
                endpoint="chat",
                model_id=model_id,
                status="ok",
                input_tokens=n,
                created_at=start + step * n,
            )
            for n in range(1, count + 1)
        ]
    )


def test_the_export_streams_over_a_real_asgi_server(live_url, org_a, alice, book, settings, monkeypatch):
    """Under ASGI the export sends each batch before reading the next: the second batch is only read once the
    client has received rows of the first (were the response buffered, the gate below would never open)."""
    settings.USAGE_EXPORT_BATCH_ROWS = 100
    start = datetime(2025, 1, 1, tzinfo=UTC)
    first = record(org_a, at=start, input_tokens=0)
    bulk_usage(org_a, model_id=first.model_id, count=449, start=start, step=timedelta(minutes=1))
    rows_received = threading.Event()
    read_batches = usage_selectors.usage_export_batches

    def gated(**kwargs):
        batches = read_batches(**kwargs)
        yield next(batches)
        assert rows_received.wait(10), "the first batch was not sent before the second was read"
        yield from batches

    monkeypatch.setattr(usage_selectors, "usage_export_batches", gated)
    cookies = {name: morsel.value for name, morsel in client_for(alice).cookies.items()}
    url = f"{live_url}/usage/export.csv?start=2025-01-01&end={date.today().isoformat()}"
    body = b""
    with httpx.stream("GET", url, cookies=cookies, timeout=30) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        for chunk in response.iter_bytes():
            body += chunk
            if b"bulk-" in body:
                rows_received.set()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [int(r["input_tokens"]) for r in rows] == list(range(450))


class TestDatesAtTheEdgesOfTheCalendar:
    """Dates near year 1 or 9999: subtracting or adding days would leave the calendar (OverflowError); the page and
    the export answer 400 with a message on the field instead of a 500."""

    @pytest.mark.parametrize(
        "query",
        [
            "end=0001-01-05",
            "end=0001-01-01",
            "start=9999-12-31",
            "start=9999-12-31&end=9999-12-31",
            "start=0001-01-01&end=0001-01-01",
            "start=9999-12-30",
            "end=9999-12-31",
        ],
    )
    @pytest.mark.parametrize("path", ["/usage/", "/usage/export.csv"])
    def test_no_500(self, as_vera, org_a, book, query, path):
        response = as_vera.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.status_code)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"date" in body.lower()

    def test_the_day_before_the_last_day_still_works(self, as_vera, org_a, book):
        assert as_vera.get("/usage/?start=2026-01-01&end=2026-01-31").status_code == 200


def _arabic_indic(number: int) -> str:
    """`number` written with Arabic-Indic digits, which int() reads as the same number."""
    return "".join(chr(0x0660 + int(d)) for d in str(number))


def test_a_key_id_in_other_digits_is_not_a_key(as_vera, org_a, book):
    key = apikey_create(organization_id=org_a.pk, name="k")[0]
    assert as_vera.get(f"/usage/?key={key.pk}").status_code == 200
    for raw in (_arabic_indic(key.pk), "\u00b2"):
        response = as_vera.get(f"/usage/?key={raw}")
        assert response.status_code == 400, raw
        assert b"Select a valid choice" in response.content
        assert as_vera.get(f"/usage/export.csv?key={raw}").status_code == 400
