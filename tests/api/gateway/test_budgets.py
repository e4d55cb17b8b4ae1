"""Budgets through the gateway, for real: hard budgets refuse with a 402 an agent can act on, exactly under
concurrency, in the statement that places the hold; alert-only budgets count; settles and the sweeper leave
nothing held."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async
from django.core import mail
from django.db import connections
from django.db.models import Sum
from django.utils import timezone

from accounts.services import apikey_create
from billing.ledger import services as ledger
from billing.metering import holds
from billing.metering.budgets.selectors import budget_window
from billing.metering.budgets.services import budget_create, budget_spend_sweep, budget_update
from billing.metering.callers import aapikey_authenticate
from billing.metering.models import BudgetAlert, BudgetSpend, BudgetSpendHold
from billing.pricing import rating
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageRecord
from core import pg
from tests.api.gateway.conftest import MODEL, balances, key_limit, limited_key, reconciled, usd, wait_for

MESSAGES = [{"role": "user", "content": "Count to five."}]
MAX_TOKENS = 10
PRICES = rating.Prices(None, 180_000, 180_000, 180_000)  # llama-3.1-8b-instruct: 0.18 USD per 1M tokens


def hold_of(max_tokens: int) -> int:
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    return rating.max_charge_nano(prices=PRICES, prompt_tokens=prompt, max_tokens=max_tokens)


def workflow_client(live_url: str, secret: str, workflow: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_url}/v1", api_key=secret, max_retries=0, default_headers={"X-Workflow": workflow}
    )


def spend_of(budget) -> tuple[int, int]:
    counters = BudgetSpend.objects.filter(budget=budget)
    return sum(c.spent_nano for c in counters), sum(c.held_nano for c in counters)


@pytest.mark.slow
def test_300_concurrent_calls_never_pass_a_hard_workflow_budget_of_five_cents(live_url, secret, org_a, funded, standin):
    # Each call holds (its prompt + 2000 tokens) x 0.18 USD per 1M; the stand-in answers max_tokens tokens, so each
    # costs its hold and 0.05 admits only as many calls as fit, whatever the interleaving. The credit (10 USD) is
    # far more.
    standin.reply_tokens, standin.delay, standin.behaviour = 2000, 0.05, "slow"
    each = hold_of(2000)
    budget = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="agents",
        amount_nano=usd("0.05"),
        period="day",
        mode="hard",
    )
    fits = usd("0.05") // each
    assert 0 < fits < 300

    async def fire() -> list[object]:
        client = openai.AsyncOpenAI(
            base_url=f"{live_url}/v1",
            api_key=secret,
            max_retries=0,
            timeout=120,
            default_headers={"X-Workflow": "agents"},
        )

        async def one() -> object:
            try:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2000)
                return 200
            except openai.APIStatusError as exc:
                return exc

        try:
            return list(await asyncio.gather(*(one() for _ in range(300))))
        finally:
            await client.close()

    outcomes = asyncio.run(fire())
    refused = [o for o in outcomes if o != 200]
    assert outcomes.count(200) == fits
    for error in refused:
        assert isinstance(error, openai.APIStatusError)
        assert (error.status_code, error.code) == (402, "budget_exceeded")
        details = error.body["details"]
        assert details["reason"] == "budget"
        assert details["budget"]["id"] == budget.pk and details["budget"]["workflow"] == "agents"
        assert details["required"]["amount_nano"] == each
        assert details["available"]["amount_nano"] < each
    wait_for(lambda: UsageRecord.objects.count() == fits)
    spent = UsageRecord.objects.filter(workflow="agents").aggregate(total=Sum("charge_nano"))["total"]
    assert spent == fits * each <= usd("0.05")
    assert spend_of(budget) == (spent, 0)
    assert not BudgetSpendHold.objects.exists()
    assert balances(funded) == (usd("10") - spent, 0)
    assert reconciled(funded) == []


def test_an_agent_reads_the_402_lowers_max_tokens_and_succeeds(live_url, secret, org_a, funded, standin):
    budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="agent-loop",
        amount_nano=usd("0.0001"),
        period="month",
        mode="hard",
    )
    client = workflow_client(live_url, secret, "agent-loop")
    max_tokens, attempts = 4000, 0
    while True:
        attempts += 1
        try:
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=max_tokens)
            break
        except openai.APIStatusError as exc:
            assert exc.status_code == 402 and attempts == 1
            details = exc.body["details"]
            assert details["reason"] == "budget" and details["affordable_max_tokens"] > 0
            max_tokens = details["affordable_max_tokens"]
    assert attempts == 2 and answer.usage is not None
    assert hold_of(max_tokens) <= usd("0.0001") < hold_of(max_tokens + 1)


def test_the_402_object_names_the_budget_prices_reset_and_where_to_add_credit(
    live_url, secret, org_a, funded, standin, settings
):
    settings.SITE_URL = "https://billing.example.com"
    budget = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="organization",
        amount_nano=usd("0.00001"),
        period="week",
        mode="hard",
    )
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=500)
    error = caught.value
    assert (error.status_code, error.code, error.type) == (402, "budget_exceeded", "insufficient_quota")
    assert "The organization's budget per week is reached" in error.message
    details = error.body["details"]
    start = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = start - timedelta(days=start.weekday())
    resets = (monday + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    assert details == {
        "reason": "budget",
        "currency": "USD",
        "available": {"amount": "0.00001", "amount_nano": usd("0.00001")},
        "required": {"amount": details["required"]["amount"], "amount_nano": hold_of(500)},
        "prompt_tokens": chat_prompt_tokens(MESSAGES, "cl100k_base"),
        "max_tokens": 500,
        "n": 1,
        "affordable_max_tokens": details["affordable_max_tokens"],
        "prices": {
            "model": MODEL,
            "unit": "per_million_tokens",
            "input": "0.18",
            "cached_input": "0.18",
            "output": "0.18",
            "request_fee": "0.00",
            "service_tier": "default",
            "service_tier_factor_bps": 10_000,
        },
        "resets_at": resets,
        "add_credit_url": "https://billing.example.com/billing/top-up/",
        "budget": {
            "id": budget.pk,
            "scope": "organization",
            "workflow": None,
            "api_key_id": None,
            "period": "week",
            "mode": "hard",
            "amount": {"amount": "0.00001", "amount_nano": usd("0.00001")},
            "used": {"amount": "0.00", "amount_nano": 0},
            "resets_at": resets,
        },
    }
    assert hold_of(details["affordable_max_tokens"]) <= usd("0.00001") < hold_of(details["affordable_max_tokens"] + 1)
    assert not UsageRecord.objects.exists() and balances(funded) == (usd("10"), 0)


def test_credit_refusals_carry_the_object_too(client, org_a, wallet):
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("0.000001"), idempotency_key="tiny", actor="t"
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=500)
    details = caught.value.body["details"]
    assert caught.value.code == "insufficient_credit"
    assert (details["reason"], details["available"]["amount_nano"]) == ("credit", usd("0.000001"))
    assert details["required"]["amount_nano"] == hold_of(500) and details["resets_at"] is None
    assert details["add_credit_url"].endswith("/billing/top-up/")


def test_a_key_spend_limit_refusal_carries_the_object(live_url, funded, org_a):
    key, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("0.00001"), period="day")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1000)
    assert caught.value.code == "key_spend_limit_reached"
    details = caught.value.body["details"]
    assert (details["reason"], details["key_spend_limit"]["api_key_id"]) == ("key_spend_limit", key.pk)
    assert details["key_spend_limit"]["limit"]["amount_nano"] == usd("0.00001")
    # The limit is the key's hard budget, named like any other budget, with its period's end.
    budget = key_limit(key)
    _, resets_at = budget_window(period="day", at=timezone.now())
    assert details["budget"]["id"] == budget.pk
    assert (details["budget"]["scope"], details["budget"]["period"]) == ("api_key", "day")
    assert details["resets_at"] == details["budget"]["resets_at"] == resets_at.isoformat().replace("+00:00", "Z")


def test_alert_only_and_other_workflows_budgets_count_but_never_refuse(
    live_url, secret, org_a, alice, funded, standin, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    alert = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="organization",
        amount_nano=usd("0.000001"),
        period="month",
        mode="alert",
    )
    other = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="other",
        amount_nano=usd("0.000001"),
        period="day",
        mode="hard",
    )
    key_budget = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="api_key",
        api_key_id=funded_key_id(secret),
        amount_nano=usd("1"),
        period="day",
        mode="hard",
    )
    client = workflow_client(live_url, secret, "mine")
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    record = UsageRecord.objects.get()
    wait_for(lambda: spend_of(alert) == (record.charge_nano, 0))
    assert spend_of(key_budget) == (record.charge_nano, 0)
    assert spend_of(other) == (0, 0)
    assert not BudgetSpendHold.objects.exists()
    # Past every threshold of the alert-only budget (and of none other): each recorded once and emailed once.
    wait_for(lambda: BudgetAlert.objects.exclude(emailed_at=None).count() == 3)
    assert set(BudgetAlert.objects.values_list("budget_id", "threshold_percent")) == {
        (alert.pk, 50),
        (alert.pk, 80),
        (alert.pk, 100),
    }
    wait_for(lambda: len(mail.outbox) == 3)  # each claimed (emailed_at) just before its send
    assert [message.to for message in mail.outbox] == [["alice@example.com"]] * 3


def test_alert_only_budgets_are_counted_at_the_settle_and_budgets_changed_mid_call_once(
    live_url, secret, org_a, funded, standin
):
    # Only a hard budget is claimed with the hold; the settle counts the call against every other budget covering
    # it: an alert-only one, one set while the call was in flight, and one switched from hard to alert in flight
    # (its claim settles it; it is not counted a second time).
    standin.delay, standin.behaviour = 1.0, "slow"
    alert = budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=usd("1"), period="month", mode="alert"
    )
    switched = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="agents",
        amount_nano=usd("1"),
        period="day",
        mode="hard",
    )
    client = workflow_client(live_url, secret, "agents")
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(client.chat.completions.create, model=MODEL, messages=MESSAGES, max_tokens=5)
        wait_for(lambda: BudgetSpendHold.objects.exists())
        assert list(BudgetSpendHold.objects.values_list("budget_spend__budget_id", flat=True)) == [switched.pk]
        assert spend_of(alert) == (0, 0) and spend_of(switched) == (0, hold_of(5))
        budget_update(
            organization_id=org_a.pk,
            budget_id=switched.pk,
            actor="t",
            amount_nano=usd("1"),
            period="day",
            mode="alert",
            thresholds=[],
        )
        late = budget_create(
            organization_id=org_a.pk,
            actor="t",
            scope="api_key",
            api_key_id=funded_key_id(secret),
            amount_nano=usd("1"),
            period="week",
            mode="hard",
        )
        call.result(timeout=30)
    charge = UsageRecord.objects.get().charge_nano
    assert charge > 0
    wait_for(lambda: spend_of(alert) == (charge, 0))
    assert spend_of(switched) == (charge, 0)
    assert spend_of(late) == (charge, 0)
    assert not BudgetSpendHold.objects.exists()


def funded_key_id(secret: str) -> int:
    from accounts import keyformat
    from accounts.models import ApiKey

    return ApiKey.objects.get(key_id=keyformat.secret_key_id(secret)).pk


def test_a_failed_call_frees_its_budget_claim(live_url, secret, org_a, funded, standin):
    standin.behaviour = "http500"
    budget = budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=usd("1"), period="day", mode="hard"
    )
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    wait_for(lambda: spend_of(budget) == (0, 0))
    assert not BudgetSpendHold.objects.exists()


def test_a_crashed_calls_budget_claim_is_freed_once_its_hold_expires(live_url, secret, org_a, funded):
    budget = budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=usd("1"), period="day", mode="hard"
    )

    async def place() -> holds.Ticket:
        key = await aapikey_authenticate(secret=secret)
        assert key is not None
        try:
            return await holds.hold_open(
                key=key,
                request_id="req_crashed",
                amount_nano=usd("0.30"),
                ttl_seconds=60,
                reason="t",
                workflow="",
            )
        finally:
            await pg.pool_close()
            await sync_to_async(connections.close_all)()

    ticket = asyncio.run(place())
    assert ticket.budgets == 1 and spend_of(budget) == (0, usd("0.30"))
    assert budget_spend_sweep() == 0  # its hold is still open
    assert ledger.holds_expire(now=timezone.now() + timedelta(minutes=5)) == 1
    assert budget_spend_sweep() == 1
    assert spend_of(budget) == (0, 0) and not BudgetSpendHold.objects.exists()
    assert budget_spend_sweep() == 0


def test_a_key_reads_its_organizations_budgets_at_v1_budgets(live_url, secret, org_a, org_b, funded, standin):
    budget = budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="workflow",
        workflow="agents",
        amount_nano=usd("1"),
        period="day",
        mode="hard",
    )
    budget_create(organization_id=org_b.pk, actor="t", scope="organization", amount_nano=usd("1"), period="day")
    workflow_client(live_url, secret, "agents").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    charge = UsageRecord.objects.get().charge_nano
    response = httpx.get(f"{live_url}/v1/budgets", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    [item] = response.json()["data"]
    assert (item["id"], item["mode"], item["workflow"]) == (budget.pk, "hard", "agents")
    assert item["current_period"]["spent_nano"] == charge
    assert item["current_period"]["left_nano"] == usd("1") - charge
    assert item["api_key"] is None
    assert httpx.post(f"{live_url}/v1/budgets", headers={"Authorization": f"Bearer {secret}"}).status_code == 405
    assert httpx.get(f"{live_url}/v1/budgets").status_code == 401


def test_a_program_finds_its_own_keys_limit_at_v1_budgets_by_the_public_id_in_its_secret(live_url, funded, org_a):
    mine, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("2"), period="day", name="mine")
    other, _ = limited_key(organization_id=org_a.pk, amount_nano=usd("3"), period="day", name="other")
    data = httpx.get(f"{live_url}/v1/budgets", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert sorted(item["api_key"]["key_id"] for item in data) == sorted([mine.key_id, other.key_id])
    [own] = [item for item in data if secret.startswith("sk-tb-" + item["api_key"]["key_id"])]
    assert (own["id"], own["api_key"], own["api_key_id"], own["amount_nano"]) == (
        key_limit(mine).pk,
        {"id": mine.pk, "key_id": mine.key_id, "name": "mine"},
        mine.pk,
        usd("2"),
    )


def not_covering(org_a, org_b, other_key_id: int, mode: str) -> list:
    """Budgets of `mode`, tiny, that a call of org_a tagged "agents" and made with another key than other_key_id's
    must neither be claimed from nor counted against (billing/ledger/functions/budget_covers.sql)."""
    tiny = {"actor": "t", "amount_nano": 1, "period": "day", "mode": mode}
    return [
        budget_create(organization_id=org_a.pk, scope="api_key", api_key_id=other_key_id, **tiny),
        budget_create(organization_id=org_a.pk, scope="workflow", workflow="other", **tiny),
        budget_create(organization_id=org_b.pk, scope="organization", **tiny),
        budget_create(organization_id=org_b.pk, scope="workflow", workflow="agents", **tiny),
    ]


@pytest.mark.parametrize("mode", ["hard", "alert"])
def test_budgets_that_do_not_cover_a_call_are_neither_claimed_nor_counted(
    live_url, secret, org_a, org_b, funded, standin, mode
):
    # Hard ones would be claimed with the hold (and refuse: 1 nano), alert-only ones counted at the settle.
    other_key, _ = apikey_create(organization_id=org_a.pk, name="other")
    others = not_covering(org_a, org_b, other_key.pk, mode)
    covering = budget_create(
        organization_id=org_a.pk, actor="t", scope="workflow", workflow="agents", amount_nano=usd("1"), period="day"
    )
    workflow_client(live_url, secret, "agents").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    charge = UsageRecord.objects.get().charge_nano
    wait_for(lambda: spend_of(covering) == (charge, 0))
    assert [spend_of(budget) for budget in others] == [(0, 0)] * 4
