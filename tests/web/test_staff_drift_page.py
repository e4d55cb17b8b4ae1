"""The staff console's drift report: by model and model server, calls, flagged ones and their share, and how far
the reported totals were from tiktoken's; a date range; staff only; bad dates answer the form's error."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from billing.usage.models import UsageRecord
from tests.accounts.factories import UserFactory
from tests.web.conftest import client_for, record

PAGE = "/staff/pricing/drift/"
DAY = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture
def as_dana(db) -> Client:
    return client_for(UserFactory(username="dana@operator.example", is_staff=True))


def served(usage: UsageRecord, *, by: str, estimated_input: int, estimated_output: int) -> None:
    UsageRecord.objects.filter(pk=usage.pk).update(
        served_by=by,
        usage_reported=True,
        estimated_input_tokens=estimated_input,
        estimated_output_tokens=estimated_output,
    )


def rows(page: str) -> list[str]:
    return [part.split("</tr>")[0] for part in page.split('data-testid="drift-row"')[1:]]


def test_drift_by_model_and_server_in_the_range(as_dana, org_a, org_b, book):
    # gpt-4o-mini on gpu-1: 4 calls, 1 flagged; input 500 billed against 400 estimated (+25 %).
    for flagged in (True, False, False, False):
        usage = record(org_a, at=DAY, input_tokens=125, output_tokens=50, drift_flagged=flagged)
        served(usage, by="gpu-1.example", estimated_input=100, estimated_output=50)
    # Another organization's calls count too: the report is the servers', across customers.
    usage = record(org_b, at=DAY, model="gpt-4o", output_tokens=700, reasoning_tokens=600)
    served(usage, by="gpu-2.example", estimated_input=100, estimated_output=100)
    # Outside the range.
    usage = record(org_a, at=DAY - timedelta(days=5), drift_flagged=True)
    served(usage, by="gpu-3.example", estimated_input=100, estimated_output=50)

    response = as_dana.get(PAGE, {"start": "2026-03-09", "end": "2026-03-10"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'aria-current="page">Token drift</a>' in page
    first, second = rows(page)
    assert 'data-model="gpt-4o-mini" data-server="gpu-1.example"' in first
    assert '"drift-flagged">1<' in first and '"drift-share">25.0 %<' in first
    assert '"drift-input">25.0 %<' in first and '"drift-output">0.0 %<' in first
    # Reasoning is left out of the output compared: 700 - 600 = 100 visible, as estimated.
    assert 'data-model="gpt-4o" data-server="gpu-2.example"' in second
    assert '"drift-flagged">0<' in second and '"drift-output">0.0 %<' in second
    assert "gpu-3.example" not in page
    assert "UTC days 2026-03-09 to 2026-03-10" in page

    assert "gpu-3.example" in as_dana.get(PAGE, {"start": "2026-03-01", "end": "2026-03-10"}).content.decode()


def test_the_default_range_is_the_last_30_days_and_the_nav_links_it(as_dana, book):
    response = as_dana.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "No gateway calls in these days." in page and 'data-testid="drift-range"' in page
    assert 'data-testid="nav-staff-drift"' in as_dana.get("/staff/pricing/").content.decode()


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start": "yesterday"}, "Enter a valid date"),
        ({"start": "2026-03-10", "end": "2026-03-09"}, "From must be on or before To."),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "at most 366 days"),
    ],
)
def test_bad_dates_answer_the_form_with_its_error(as_dana, params, says):
    response = as_dana.get(PAGE, params)
    assert response.status_code == 400
    page = response.content.decode()
    assert says in page and 'data-testid="drift-row"' not in page


def test_only_staff_see_it(as_alice, client):
    assert as_alice.get(PAGE).status_code == 302  # to the log-in page, as every staff page
    assert client.get(PAGE).status_code == 302
