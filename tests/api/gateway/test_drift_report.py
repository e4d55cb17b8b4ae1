"""The staff drift report: gateway calls by model and model server, with the ones whose reported counts drifted
from tiktoken's, after real calls through the openai SDK to a model server that over-reports."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services.stafftokens import staff_token_issue
from tests.accounts.factories import UserFactory
from tests.api.gateway.conftest import MODEL, records

pytestmark = pytest.mark.usefixtures("standin")

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def staff_api(db) -> APIClient:
    staff = UserFactory(username="dana@operator.example", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {staff_token_issue(user=staff, replace=True, actor=None)[1]}")
    return client


def test_drift_by_model_and_server(client, funded, standin, staff_api):
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    standin.inflate_prompt = 500  # the server bills 500 prompt tokens more than there are
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    standin.inflate_prompt = 0
    standin.reasoning_tokens = 400  # hidden reasoning: not drift
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1000)
    assert [r.drift_flagged for r in records()] == [False, True, False]
    assert {r.served_by for r in records()} == {"127.0.0.1"}
    today = timezone.now().date().isoformat()
    answer = staff_api.get("/api/staff/usage/drift/", {"start": today, "end": today})
    assert answer.status_code == 200, answer.content
    (row,) = answer.json()
    assert (row["model"], row["served_by"], row["requests"], row["reported"], row["flagged"]) == (
        MODEL,
        "127.0.0.1",
        3,
        3,
        1,
    )
    assert row["flagged_bps"] == 3333
    assert row["input_tokens"] - row["estimated_input_tokens"] == 500
    assert row["visible_output_tokens"] == row["estimated_output_tokens"] == 30


def test_bad_dates_are_a_400_and_customers_cannot_read_it(staff_api, client, live_url):
    assert staff_api.get("/api/staff/usage/drift/", {"start": "yesterday"}).status_code == 400
    assert staff_api.get("/api/staff/usage/drift/", {"start": "2026-02-02", "end": "2026-02-01"}).status_code == 400
    assert staff_api.get("/api/staff/usage/drift/", {"start": "2020-01-01", "end": "2026-01-01"}).status_code == 400
    assert APIClient().get("/api/staff/usage/drift/").status_code in (401, 403)
