"""The organization's costs, usage, balance and budgets for programs (/v1/organization/*), read with an admin key
over real HTTP: buckets, grouping, paging, bad parameters, key kinds, and another organization's data never seen."""

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from accounts.models import ApiKey
from accounts.services import apikey_create
from billing.metering.budgets.services import budget_create, key_spend_limit_set
from billing.metering.models import Budget
from billing.pricing.models import AIModel
from billing.usage.models import UsageRecord
from core.errors import ApplicationError
from tests.api.gateway.conftest import MODEL, records, usd

pytestmark = pytest.mark.usefixtures("standin")

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
T0 = int(DAY0.timestamp())
_ids = itertools.count()


@pytest.fixture
def admin_secret(org_a) -> str:
    return apikey_create(organization_id=org_a.pk, name="finance bot", access="admin")[1]


@pytest.fixture
def admin(live_url: str, admin_secret: str) -> httpx.Client:
    with httpx.Client(base_url=f"{live_url}/v1", headers={"Authorization": f"Bearer {admin_secret}"}) as c:
        yield c


def usage(org, *, at, model="gpt-4o", key=None, workflow="", charge=1_000, lines=None, **counts) -> UsageRecord:
    return UsageRecord.objects.create(
        organization=org,
        api_key=key,
        request_id=f"req-org-{next(_ids)}",
        endpoint=counts.pop("endpoint", "chat"),
        workflow=workflow,
        model=AIModel.objects.get(slug=model),
        status=counts.pop("status", "ok"),
        charge_nano=charge,
        lines=lines if lines is not None else [{"kind": "output", "amount_nano": charge}],
        created_at=at,
        **counts,
    )


def test_costs_in_daily_buckets_grouped_by_model_and_line_item(admin, org_a, org_b, priced):
    key = ApiKey.objects.create(organization=org_a, name="k", key_id="kid-a", secret_hash="x")
    lines = [{"kind": "input", "amount_nano": 300}, {"kind": "reasoning", "amount_nano": 700}]
    usage(org_a, at=DAY0 + timedelta(hours=1), key=key, lines=lines, charge=1_000)
    usage(org_a, at=DAY0 + timedelta(hours=5), model="gpt-4o-mini", charge=5)
    usage(org_a, at=DAY0 + timedelta(days=2), charge=2_000_000_000)
    usage(org_b, at=DAY0 + timedelta(hours=1), charge=999_999)  # another organization's: never counted
    answer = admin.get("/organization/costs", params={"start_time": T0, "end_time": T0 + 3 * 86400})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["object"], body["has_more"], body["next_page"]) == ("page", False, None)
    assert [b["start_time"] for b in body["data"]] == [T0, T0 + 86400, T0 + 2 * 86400]
    day1, day2, day3 = (b["results"] for b in body["data"])
    assert [r["amount"] for r in day1] == [{"value": "0.000001005", "value_nano": 1_005, "currency": "USD"}]
    assert day2 == []  # an empty bucket is still listed
    assert day3[0]["amount"]["value"] == "2.00"
    grouped = admin.get(
        "/organization/costs",
        params={"start_time": T0, "end_time": T0 + 86400, "group_by": "model,line_item"},
    ).json()
    results = {(r["model"], r["line_item"]): r["amount"]["value_nano"] for r in grouped["data"][0]["results"]}
    assert results == {("gpt-4o", "input"): 300, ("gpt-4o", "reasoning"): 700, ("gpt-4o-mini", "output"): 5}
    by_key = admin.get(
        "/organization/costs", params={"start_time": T0, "end_time": T0 + 86400, "group_by": ["api_key_id"]}
    ).json()
    assert {r["api_key_id"]: r["amount"]["value_nano"] for r in by_key["data"][0]["results"]} == {
        "kid-a": 1_000,
        None: 5,
    }


def test_usage_in_hourly_buckets_pages_with_next_page(admin, org_a, priced):
    for hour in range(30):
        usage(
            org_a,
            at=DAY0 + timedelta(hours=hour, minutes=10),
            workflow="triage" if hour % 2 else "",
            input_tokens=100,
            cached_input_tokens=40,
            output_tokens=50,
            reasoning_tokens=20,
        )
    usage(org_a, at=DAY0, endpoint="embeddings", input_tokens=7)
    usage(org_a, at=DAY0, status="upstream_error", charge=0, lines=[], input_tokens=999)
    params = {"start_time": T0, "end_time": T0 + 30 * 3600, "bucket_width": "1h", "limit": 24}
    first = admin.get("/organization/usage/completions", params=params).json()
    assert len(first["data"]) == 24 and first["has_more"] and first["next_page"] == f"page_{T0 + 24 * 3600}"
    (result,) = first["data"][0]["results"]
    assert result == {
        "object": "organization.usage.completions.result",
        "input_tokens": 100,
        "input_cached_tokens": 40,
        "output_tokens": 50,
        "output_reasoning_tokens": 20,
        "num_model_requests": 1,
        "model": None,
        "api_key_id": None,
        "workflow": None,
    }
    rest = admin.get("/organization/usage/completions", params={**params, "page": first["next_page"]}).json()
    assert [b["start_time"] for b in rest["data"]] == [T0 + h * 3600 for h in range(24, 30)]
    assert not rest["has_more"] and rest["next_page"] is None
    by_workflow = admin.get(
        "/organization/usage/completions",
        params={"start_time": T0, "end_time": T0 + 30 * 3600, "group_by": "workflow", "workflows": "triage"},
    ).json()
    assert [(r["workflow"], r["num_model_requests"]) for r in by_workflow["data"][0]["results"]] == [("triage", 12)]
    embeddings = admin.get("/organization/usage/embeddings", params={"start_time": T0, "end_time": T0 + 3600}).json()
    assert [r["input_tokens"] for r in embeddings["data"][0]["results"]] == [7]


def test_a_real_call_shows_in_costs_and_usage(admin, client, funded, org_a, secret):
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    (record,) = records()
    start = int(record.created_at.timestamp()) - 10
    costs = admin.get("/organization/costs", params={"start_time": start, "group_by": "api_key_id"}).json()
    (result,) = costs["data"][0]["results"]
    assert result["amount"]["value_nano"] == record.charge_nano > 0
    assert result["api_key_id"] == record.api_key.key_id
    balance = admin.get("/organization/balance").json()
    assert balance["object"] == "balance" and balance["available_nano"] == funded.available_nano - record.charge_nano


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "start_time"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": "-5"}, "start_time"),
        ({"start_time": "99999999999999999999"}, "start_time"),
        ({"start_time": T0, "end_time": T0}, "end_time"),
        ({"start_time": T0, "bucket_width": "1m"}, "bucket_width"),
        ({"start_time": T0, "bucket_width": "1h", "limit": "169"}, "limit"),
        ({"start_time": T0, "limit": "0"}, "limit"),
        ({"start_time": T0, "limit": "many"}, "limit"),
        ({"start_time": T0, "group_by": "project_id"}, "group_by"),
        ({"start_time": T0, "end_time": T0 + 86400, "page": "page_1"}, "page"),
        ({"start_time": T0, "end_time": T0 + 86400, "page": f"page_{T0 + 3600}"}, "page"),
        ({"start_time": T0, "project_ids": "p"}, "project_ids"),
        ({"start_time": T0, "models": ",".join(str(n) for n in range(101))}, "models"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(admin, priced, params, param):
    answer = admin.get("/organization/costs", params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "invalid_value")
    assert error["message"]


def test_a_metered_key_cannot_read_billing_data_and_an_admin_key_cannot_call_models(
    live_url, admin, secret, client, funded
):
    metered = httpx.get(
        f"{live_url}/v1/organization/costs", params={"start_time": T0}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert metered.status_code == 403 and metered.json()["error"]["code"] == "admin_key_required"
    for path in ("/chat/completions", "/balance", "/models"):
        method = admin.post if path == "/chat/completions" else admin.get
        refused = method(path, **({"json": {"model": MODEL, "messages": []}} if method == admin.post else {}))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_not_metered", path
    nobody = httpx.get(f"{live_url}/v1/organization/costs", params={"start_time": T0})
    assert nobody.status_code == 401
    assert records() == []


def test_an_admin_key_takes_no_scopes_or_limits(org_a):
    with pytest.raises(ApplicationError, match="admin key"):
        apikey_create(organization_id=org_a.pk, name="x", access="admin", scopes={"models": ["gpt-4o"]})
    # A spend limit is a hard budget of the key: an admin key takes none.
    admin_key, _ = apikey_create(organization_id=org_a.pk, name="x", access="admin")
    with pytest.raises(ApplicationError, match="admin key"):
        key_spend_limit_set(organization_id=org_a.pk, api_key_id=admin_key.pk, actor="t", amount_nano=10, period="day")
    assert not Budget.objects.exists()
    with pytest.raises(ApplicationError, match="access must be"):
        apikey_create(organization_id=org_a.pk, name="x", access="root")


def test_budgets_with_their_consumption_through_the_sdk_and_only_this_organizations(
    live_url, admin_secret, client, funded, org_a, org_b, secret
):
    whole = budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=usd("5"), period="month"
    )
    agents = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="agents",
        amount_nano=usd("1"),
        period="day",
        mode="hard",
    )
    budget_create(organization_id=org_b.pk, actor="t", scope="organization", amount_nano=usd("1"), period="day")
    client.with_options(default_headers={"X-Workflow": "agents"}).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
    (record,) = records()
    admin_sdk = openai.OpenAI(base_url=f"{live_url}/v1", api_key=admin_secret, max_retries=0, timeout=30)

    listed = admin_sdk.get("/organization/budgets", cast_to=object)
    assert listed["object"] == "list"
    by_id = {item["id"]: item for item in listed["data"]}
    assert set(by_id) == {whole.pk, agents.pk}
    item = by_id[agents.pk]
    assert (item["scope"], item["workflow"], item["mode"], item["period"]) == ("workflow", "agents", "hard", "day")
    current = item["current_period"]
    assert current["spent_nano"] == record.charge_nano > 0 and current["held_nano"] == 0
    assert current["left_nano"] == usd("1") - record.charge_nano
    assert current["percent_spent"] == record.charge_nano * 100 // usd("1")
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(current["resets_at"]) == day + timedelta(days=1)
    assert by_id[whole.pk]["current_period"]["spent_nano"] == record.charge_nano

    workflows = admin_sdk.get("/organization/budgets", cast_to=object, options={"params": {"scope": "workflow"}})
    assert [item["id"] for item in workflows["data"]] == [agents.pk]
    # The same list a metered key reads at /v1/budgets.
    assert client.get("/budgets", cast_to=object) == listed


@pytest.mark.parametrize(("params", "param"), [({"scope": "team"}, "scope"), ({"workflow": "agents"}, "workflow")])
def test_bad_budget_parameters_are_a_400_naming_the_parameter(admin, priced, params, param):
    answer = admin.get("/organization/budgets", params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_value") and error["message"]


def test_a_metered_key_cannot_read_the_budgets_at_the_admin_path(live_url, secret, priced):
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0).get(
            "/organization/budgets", cast_to=object
        )
    assert refused.value.code == "admin_key_required"
    assert httpx.get(f"{live_url}/v1/organization/budgets").status_code == 401
