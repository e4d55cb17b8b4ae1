"""POST /v1/usage/events: usage reported server-to-server, rated and debited like gateway calls, idempotent."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import apikey_create
from billing.ledger import services as ledger
from billing.metering.budgets.services import budget_create
from billing.metering.models import Budget, BudgetAlert, BudgetSpend
from billing.pricing import rating
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import balances, key_limit, limited_key, reconciled, usd
from tests.api.gateway.test_budgets import not_covering


@pytest.fixture
def reporter(org_a) -> str:
    return apikey_create(organization_id=org_a.pk, name="meter", scopes={"endpoints": ["usage"]})[1]


def post(live_url: str, secret: str, events: object) -> httpx.Response:
    return httpx.post(
        f"{live_url}/v1/usage/events", json={"events": events}, headers={"Authorization": f"Bearer {secret}"}
    )


def gpt4o(input_tokens: int, cached: int, output: int) -> int:
    return (
        rating.line_cost_nano(input_tokens - cached, 2_500_000)
        + rating.line_cost_nano(cached, 1_250_000)
        + rating.line_cost_nano(output, 10_000_000)
    )


def test_events_are_rated_debited_and_recorded_once(live_url, reporter, funded):
    events = [
        {"id": "run-1", "model": "gpt-4o", "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 50},
        {"id": "run-2", "model": "text-embedding-3-small", "input_tokens": 5000, "workflow": "indexer"},
    ]
    body = post(live_url, reporter, events).json()
    assert [r["status"] for r in body["data"]] == ["recorded", "recorded"]
    assert body["data"][0]["charge_nano"] == gpt4o(1000, 200, 50)
    embedding = rating.line_cost_nano(5000, 20_000)
    assert body["data"][1]["charge_nano"] == embedding
    total = gpt4o(1000, 200, 50) + embedding
    assert balances(funded) == (usd("10") - total, 0)
    # Replayed: answered as duplicates with the first charge, charged once.
    again = post(live_url, reporter, events).json()
    assert [r["status"] for r in again["data"]] == ["duplicate", "duplicate"]
    assert again["data"][0]["charge_nano"] == gpt4o(1000, 200, 50)
    assert balances(funded) == (usd("10") - total, 0)
    records = UsageRecord.objects.order_by("id")
    assert [(r.source, r.workflow, r.endpoint) for r in records] == [
        ("metering", "", "chat"),
        ("metering", "indexer", "embeddings"),
    ]
    assert reconciled(funded) == []


def test_each_event_stands_alone_and_bad_ones_are_explained(live_url, reporter, org_a, wallet):
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("0.01"), idempotency_key="small", actor="t"
    )
    old = (timezone.now() - timedelta(days=3)).isoformat()
    events = [
        {"id": "ok-1", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10},
        {"id": "too-big", "model": "gpt-4o", "input_tokens": 10_000_000},
        {"id": "bad id with spaces", "model": "gpt-4o", "input_tokens": 1},
        {"id": "nomodel", "model": "gpt-9", "input_tokens": 1},
        {"id": "negative", "model": "gpt-4o", "input_tokens": -5},
        {"id": "cached", "model": "gpt-4o", "input_tokens": 5, "cached_input_tokens": 6},
        {"id": "old", "model": "gpt-4o", "input_tokens": 5, "occurred_at": old},
        {"id": "tier", "model": "gpt-4o", "input_tokens": 5, "service_tier": "gold"},
        "not an object",
    ]
    body = post(live_url, reporter, events).json()
    statuses = [(r["id"], r["status"], (r["error"] or {}).get("code")) for r in body["data"]]
    assert statuses == [
        ("ok-1", "recorded", None),
        ("too-big", "rejected", "insufficient_credit"),
        ("bad id with spaces", "rejected", "invalid_value"),
        ("nomodel", "rejected", "model_not_found"),
        ("negative", "rejected", "invalid_value"),
        ("cached", "rejected", "invalid_value"),
        ("old", "rejected", "invalid_value"),
        ("tier", "rejected", "invalid_value"),
        (None, "rejected", "invalid_value"),
    ]
    assert (body["recorded"], body["rejected"]) == (1, 8)
    assert UsageRecord.objects.count() == 1
    assert reconciled(wallet) == []


def test_a_replayed_id_with_different_usage_is_refused(live_url, reporter, funded):
    post(live_url, reporter, [{"id": "x", "model": "gpt-4o", "input_tokens": 10}])
    body = post(live_url, reporter, [{"id": "x", "model": "gpt-4o", "input_tokens": 11}]).json()
    assert body["data"][0]["error"]["code"] == "idempotency_conflict"
    assert UsageRecord.objects.get().input_tokens == 10


def test_event_ids_belong_to_their_organization(live_url, reporter, funded, org_b):
    ledger.grant_create(organization_id=org_b.pk, kind="paid", amount_nano=usd("1"), idempotency_key="b", actor="t")
    other = apikey_create(organization_id=org_b.pk, name="b")[1]
    event = [{"id": "shared-id", "model": "gpt-4o", "input_tokens": 10}]
    assert post(live_url, reporter, event).json()["data"][0]["status"] == "recorded"
    assert post(live_url, other, event).json()["data"][0]["status"] == "recorded"
    assert UsageRecord.objects.count() == 2


def test_the_batch_itself_must_be_well_formed_and_the_key_allowed(live_url, reporter, funded, org_a, settings):
    assert post(live_url, reporter, []).status_code == 400
    assert post(live_url, reporter, "x").status_code == 400
    settings.GATEWAY_USAGE_EVENTS_MAX_BATCH = 2
    too_many = [{"id": f"e{i}", "model": "gpt-4o", "input_tokens": 1} for i in range(3)]
    assert post(live_url, reporter, too_many).status_code == 400
    chat_only = apikey_create(organization_id=org_a.pk, name="c", scopes={"endpoints": ["chat"]})[1]
    assert post(live_url, chat_only, too_many[:1]).status_code == 403
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ({"occurred_at": "2026-13-45T00:00:00Z"}, "occurred_at"),  # shaped like a time, not one
        ({"occurred_at": "10000-01-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": "9999-12-31T23:59:59+00:00"}, "occurred_at"),
        ({"occurred_at": 1700000000}, "occurred_at"),
        ({"input_tokens": -1}, "input_tokens"),
        ({"input_tokens": 10**10 + 1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"model": "gpt-9"}, "model"),
        ({"model": "x" * 10_000}, "model"),
        ({"service_tier": []}, "service_tier"),
        ({"service_tier": {}}, "service_tier"),
        ({"workflow": 7}, "workflow"),
        ({"workflow": []}, "workflow"),
        ({"workflow": "no spaces"}, "workflow"),
    ],
)
def test_a_bad_event_is_rejected_by_index_and_field_and_the_rest_of_the_batch_stands(
    live_url, reporter, funded, bad, param
):
    good = {"id": "good-1", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 10}
    events = [good, {"id": "bad-1", "model": "gpt-4o", "input_tokens": 5, **bad}, {**good, "id": "good-2"}]
    response = post(live_url, reporter, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["index"], r["id"], r["status"]) for r in body["data"]] == [
        (0, "good-1", "recorded"),
        (1, "bad-1", "rejected"),
        (2, "good-2", "recorded"),
    ]
    assert body["data"][1]["error"]["param"] == param
    one = gpt4o(100, 0, 10)
    assert balances(funded) == (usd("10") - 2 * one, 0)
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == [
        f"metering:{funded.organization_id}:good-1",
        f"metering:{funded.organization_id}:good-2",
    ]
    # The same batch again: the good events are duplicates, the bad one is still refused, nothing more is charged.
    again = post(live_url, reporter, events).json()
    assert [r["status"] for r in again["data"]] == ["duplicate", "rejected", "duplicate"]
    assert balances(funded) == (usd("10") - 2 * one, 0)
    assert UsageRecord.objects.count() == 2
    assert reconciled(funded) == []


def test_the_same_batch_sent_several_times_at_once_is_charged_once(live_url, reporter, funded):
    events = [{"id": f"c-{i}", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 10} for i in range(5)]
    with ThreadPoolExecutor(6) as pool:
        answers = [r.json() for r in pool.map(lambda _: post(live_url, reporter, events), range(6))]
    # Each event is recorded by exactly one of the requests; the others answer it as a duplicate.
    for index in range(5):
        assert sorted(a["data"][index]["status"] for a in answers) == ["duplicate"] * 5 + ["recorded"]
    assert UsageRecord.objects.count() == 5
    assert balances(funded) == (usd("10") - 5 * gpt4o(100, 0, 10), 0)
    assert reconciled(funded) == []


def spent(budget: Budget) -> tuple[int, int]:
    counter = BudgetSpend.objects.filter(budget=budget).first()
    return (counter.spent_nano, counter.held_nano) if counter else (0, 0)


def test_events_count_against_every_budget_covering_them_and_a_hard_one_refuses_crossing_it(
    live_url, reporter, org_a, funded
):
    each = gpt4o(1000, 0, 0)
    reporter_id = ApiKey.objects.get(name="meter").pk
    indexer = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="indexer",
        amount_nano=each + each // 2,
        period="month",
        mode="hard",
    )
    whole = budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=each, period="day", mode="alert"
    )
    key_alert = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="api_key",
        api_key_id=reporter_id,
        amount_nano=usd("1"),
        period="week",
        mode="alert",
    )
    event = {"model": "gpt-4o", "input_tokens": 1000, "workflow": "indexer"}
    assert post(live_url, reporter, [{"id": "e1", **event}]).json()["data"][0]["status"] == "recorded"
    assert (spent(indexer), spent(whole), spent(key_alert)) == ((each, 0), (each, 0), (each, 0))
    # The organization's alert-only budget is used up: its thresholds fire, as after gateway calls.
    assert sorted(BudgetAlert.objects.filter(budget=whole).values_list("threshold_percent", flat=True)) == [
        50,
        80,
        100,
    ]

    refused = post(live_url, reporter, [{"id": "e2", **event}]).json()["data"][0]
    assert (refused["status"], refused["error"]["code"]) == ("rejected", "budget_exceeded")
    assert "workflow 'indexer'" in refused["error"]["message"]
    # Nothing of it was written: no record, no debit, and no budget counted it (the alert-only ones neither).
    assert UsageRecord.objects.count() == 1
    assert balances(funded) == (usd("10") - each, 0)
    assert (spent(indexer), spent(whole), spent(key_alert)) == ((each, 0), (each, 0), (each, 0))

    # Another workflow's event is not the indexer's to refuse; alert-only budgets never refuse.
    other = post(live_url, reporter, [{"id": "e3", **event, "workflow": "crawler"}]).json()["data"][0]
    assert other["status"] == "recorded"
    assert (spent(indexer), spent(whole), spent(key_alert)) == ((each, 0), (2 * each, 0), (2 * each, 0))
    assert reconciled(funded) == []


def test_a_keys_spend_limit_holds_exactly_for_events_sent_at_once(live_url, org_a, funded):
    each = gpt4o(1000, 0, 0)
    key, secret = limited_key(organization_id=org_a.pk, amount_nano=5 * each, period="day")

    def one(index: int) -> dict:
        event = {"id": f"k-{index}", "model": "gpt-4o", "input_tokens": 1000}
        return post(live_url, secret, [event]).json()["data"][0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(12)))
    statuses = sorted((r["status"], (r["error"] or {}).get("code")) for r in results)
    # The limit (5 events' worth) is reached exactly: the last event that fits is taken, none past it.
    assert statuses == [("recorded", None)] * 5 + [("rejected", "key_spend_limit_reached")] * 7
    assert UsageRecord.objects.count() == 5
    assert spent(key_limit(key)) == (5 * each, 0)
    assert balances(funded) == (usd("10") - 5 * each, 0)
    assert reconciled(funded) == []


@pytest.mark.parametrize("mode", ["hard", "alert"])
def test_an_event_counts_against_the_budgets_covering_it_only(live_url, reporter, org_a, org_b, funded, mode):
    other_key, _ = apikey_create(organization_id=org_a.pk, name="other")
    others = not_covering(org_a, org_b, other_key.pk, mode)
    covering = budget_create(
        organization_id=org_a.pk, actor="t", scope="workflow", workflow="agents", amount_nano=usd("1"), period="day"
    )
    event = {"id": "e-1", "model": "gpt-4o", "input_tokens": 1000, "workflow": "agents"}
    assert post(live_url, reporter, [event]).json()["data"][0]["status"] == "recorded"
    assert spent(covering) == (gpt4o(1000, 0, 0), 0)
    assert [spent(budget) for budget in others] == [(0, 0)] * 4
