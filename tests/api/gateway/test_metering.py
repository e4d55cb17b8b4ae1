"""The money steps below the HTTP layer: drift flags, the sweeper of a key limit's reservations left by a crash, and
rate-limit buckets with reserved throughput (real Redis)."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from api.gateway import catalog, ratelimit
from billing.ledger import services as ledger
from billing.metering import holds
from billing.metering.budgets.services import budget_spend_sweep
from billing.metering.callers import aapikey_authenticate
from billing.metering.models import BudgetSpend, BudgetSpendHold
from billing.pricing import rating
from billing.pricing import services as pricing_services
from billing.pricing.models import PeriodCounter
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageSource, UsageStatus
from billing.usage.services import UsageRow
from core import background, pg
from tests.api.gateway.conftest import MODEL, Limits, balances, key_limit, limited_key, reconciled, records, usd

MESSAGES = [{"role": "user", "content": "Summarise the news."}]


def test_a_large_gap_between_estimate_and_report_is_flagged(client, funded, standin):
    standin.inflate_prompt = 60
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200)
    (record,) = records()
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert (record.estimated_input_tokens, record.input_tokens, record.drift_flagged) == (prompt, prompt + 60, True)
    # Within the hold, the server's figure is what is charged.
    price = 180_000
    assert record.charge_nano == rating.line_cost_nano(prompt + 60, price) + rating.line_cost_nano(10, price)


def test_a_crashed_requests_key_reservation_is_freed_once_its_hold_expires(live_url, funded, org_a):
    key_row, secret = limited_key(organization_id=org_a.pk, name="crashy", amount_nano=usd("1"), period="day")

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
    spent = BudgetSpend.objects.get(budget=key_limit(key_row))
    assert (spent.held_nano, BudgetSpendHold.objects.count()) == (usd("0.30"), 1)
    assert budget_spend_sweep() == 0  # its hold is still open: nothing to free
    ledger.holds_expire(now=timezone.now() + timedelta(minutes=5))
    assert budget_spend_sweep() == 1
    spent.refresh_from_db()
    assert (spent.spent_nano, spent.held_nano, BudgetSpendHold.objects.count()) == (0, 0, 0)
    assert budget_spend_sweep() == 0
    assert ticket.hold_id is not None and balances(funded) == (usd("10"), 0)


@pytest.mark.django_db
async def test_reserved_throughput_is_used_first_then_the_shared_limit(settings):
    assert settings.REDIS_URL  # real Redis
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000, reserved_tokens_per_minute=5000)
    try:
        first = await ratelimit.admit(limits.draw(3000))
        assert first.admitted and first.headers["x-ratelimit-limit-tokens"] == "5000"
        refused = await ratelimit.admit(limits.draw(3000))
        assert not refused.admitted and int(refused.headers["retry-after"]) >= 1
        drains = await ratelimit.admit(limits.draw(2000))
        assert drains.admitted  # the rest of the reserved bucket
        shared = await ratelimit.admit(limits.draw(1000))
        assert shared.admitted and shared.headers["x-ratelimit-limit-tokens"] == "1000"
        assert not (await ratelimit.admit(limits.draw(500))).admitted  # type: ignore[arg-type]
        too_large = await ratelimit.admit(limits.draw(6000))
        assert too_large.too_large
        # Tokens a request did not use come back after its settle.
        ratelimit.refund(shared, used_tokens=0)
        await background.drain()
        assert (await ratelimit.admit(limits.draw(900))).admitted  # type: ignore[arg-type]
    finally:
        await ratelimit.redis_close()


@pytest.mark.django_db
async def test_refunds_of_many_keys_go_back_together_even_to_a_redis_that_forgot_the_script(settings):
    assert settings.REDIS_URL  # real Redis
    keys = [Limits(requests_per_minute=100, tokens_per_minute=1000) for _ in range(3)]
    try:
        admitted = [await ratelimit.admit(limits.draw(1000)) for limits in keys]
        assert all(admission.admitted for admission in admitted)
        assert not any([(await ratelimit.admit(limits.draw(500))).admitted for limits in keys])
        scripts = ratelimit._redis()
        assert scripts is not None
        await scripts.client.script_flush()  # a restarted Redis: the refund script must be loaded again
        for admission in admitted:
            ratelimit.refund(admission, used_tokens=100)
        await background.drain()
        # Each key got back its own 900 unused tokens, and no more.
        assert all([(await ratelimit.admit(limits.draw(900))).admitted for limits in keys])
        assert not any([(await ratelimit.admit(limits.draw(200))).admitted for limits in keys])
    finally:
        await ratelimit.redis_close()


@pytest.mark.django_db
async def test_without_redis_the_buckets_live_in_process(settings):
    settings.REDIS_URL = ""
    limits = Limits(requests_per_minute=2, tokens_per_minute=1000)
    outcomes = [(await ratelimit.admit(limits.draw(10))).admitted for _ in range(3)]
    assert outcomes == [True, True, False]


def test_a_settle_on_a_plan_that_finds_its_hold_expired_records_the_call_and_claims_no_quota(
    live_url, funded, org_a, secret
):
    """A quota-rated settle runs in a transaction with its period claims: a hold found closed rolls them back,
    and the call is still recorded (uncharged, flagged), with nothing taken from the wallet or the quota."""
    pricing_services.plan_create(
        slug="pro-expired",
        name="Pro",
        fee_nano=0,
        usage_discount_bps=0,
        allowances=[pricing_services.AllowanceSpec(included_tokens=1_000, model=MODEL)],
    )
    pricing_services.subscription_create(organization_id=org_a.pk, plan_slug="pro-expired", at=timezone.now())
    before = balances(funded)

    async def run(step):
        try:
            return await step()
        finally:
            await pg.pool_close()
            await sync_to_async(connections.close_all)()

    async def authenticated():
        key = await aapikey_authenticate(secret=secret)
        assert key is not None
        return key

    async def place() -> holds.Ticket:
        key = await authenticated()
        return await holds.hold_open(
            key=key,
            request_id="req_late",
            amount_nano=usd("0.01"),
            ttl_seconds=60,
            reason="t",
            workflow="",
        )

    ticket = asyncio.run(run(place))
    assert ticket.hold_id is not None
    assert ledger.holds_expire(now=timezone.now() + timedelta(minutes=5)) == 1

    async def settle() -> holds.Charge:
        key = await authenticated()
        context = await catalog.pricing_context_get(organization_id=org_a.pk, model_slug=MODEL)
        assert context.needs_period_state
        usage = rating.Usage(model_slug=MODEL, input_tokens=300, cached_input_tokens=0, output_tokens=200)
        row = UsageRow(
            organization_id=org_a.pk,
            api_key_id=key.id,
            source=UsageSource.GATEWAY,
            request_id="req_late",
            endpoint="chat",
            workflow="default",
            model_slug=MODEL,
            service_tier="default",
            status=UsageStatus.OK,
            input_tokens=300,
            output_tokens=200,
        )
        return await holds.settle(ticket=ticket, context=context, usage=usage, row=row, at=timezone.now())

    charge = asyncio.run(run(settle))
    assert charge.charge_nano == 0
    (record,) = records()
    assert (record.request_id, record.status, record.charge_nano) == ("req_late", "ok", 0)
    assert (record.drift_flagged, record.hold_id, record.quota_tokens) == (True, None, 0)
    assert (record.input_tokens, record.output_tokens) == (300, 200)
    assert not PeriodCounter.objects.filter(organization=org_a, used_tokens__gt=0).exists()
    assert balances(funded) == before
    assert reconciled(funded) == []
