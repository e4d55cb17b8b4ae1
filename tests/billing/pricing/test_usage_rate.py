"""Rating with the database: the claims on period counters, sync and async, and what they never do."""

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from billing.pricing import rating, selectors, services
from billing.pricing.models import CounterKind, PeriodCounter
from billing.pricing.services import AllowanceSpec
from core import pg
from tests.billing.pricing.conftest import at, fund, usd

NOW = at("2026-03-10 12:00")


@pytest.fixture
def plan_org(book, org_a):
    """Org A on a plan with 1,000 gpt-4o tokens and 500 tokens of the gpt-4o group, plus a commitment of 2,000
    tokens a month on the group."""
    with time_machine.travel(NOW, tick=False):
        fund(org_a, "500.00")
        services.plan_create(
            slug="pro",
            name="Pro",
            fee_nano=usd("20.00"),
            usage_discount_bps=1_000,
            requests_per_minute=600,
            tokens_per_minute=200_000,
            allowances=[
                AllowanceSpec(included_tokens=1_000, model="gpt-4o"),
                AllowanceSpec(included_tokens=500, group="gpt-4o"),
            ],
        )
        services.subscription_create(organization_id=org_a.pk, plan_slug="pro", at=NOW)
        offer = services.commitment_offer_create(
            name="gpt-4o group, 2k a month",
            group="gpt-4o",
            committed_tokens_per_month=2_000,
            term_months=3,
            discount_bps=2_000,
            payment="monthly",
            blended_price_micro_per_mtok=4_375_000,
        )
        services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk, starts_at=NOW)
    return org_a


def test_context_lists_quotas_then_commitments_and_rate_limits(plan_org):
    ctx = selectors.pricing_context_get(organization_id=plan_org.pk, model_slug="gpt-4o", at=NOW)
    assert [(a.source, a.scope_key, a.limit_tokens) for a in ctx.allowances] == [
        ("quota", "model:gpt-4o", 1_000),
        ("quota", "group:gpt-4o", 500),
        ("commitment", "group:gpt-4o", 2_000),
    ]
    assert (ctx.requests_per_minute, ctx.tokens_per_minute, ctx.plan_discount_bps) == (600, 200_000, 1_000)
    assert ctx.needs_period_state
    mini = selectors.pricing_context_get(organization_id=plan_org.pk, model_slug="gpt-4o-mini", at=NOW)
    assert [a.scope_key for a in mini.allowances] == ["group:gpt-4o", "group:gpt-4o"]
    other = selectors.pricing_context_get(organization_id=plan_org.pk, model_slug="llama-3.1-8b-instruct", at=NOW)
    assert other.allowances == () and not other.needs_period_state


def test_usage_rate_draws_quota_then_commitment_then_credit_and_keeps_the_version(plan_org):
    usage = rating.Usage("gpt-4o", input_tokens=1_000, output_tokens=800)
    with transaction.atomic():
        first = services.usage_rate(organization_id=plan_org.pk, usage=usage, at=NOW)
        second = services.usage_rate(organization_id=plan_org.pk, usage=usage, at=NOW)
    assert (first.quota_tokens, first.commitment_tokens) == (1_500, 300)
    assert (second.quota_tokens, second.commitment_tokens) == (0, 1_700)
    # The last 100 output tokens: $10/M less 10 % = 900,000 nano.
    assert [(line.kind, line.source, line.tokens, line.amount_nano) for line in second.lines] == [
        ("input", "commitment", 1_000, 0),
        ("output", "commitment", 700, 0),
        ("output", "credit", 100, 900_000),
    ]
    version = selectors.price_version_at(model_slug="gpt-4o", at=NOW)
    assert first.price_version_id == second.price_version_id == version.pk
    used = dict(PeriodCounter.objects.values_list("scope_key", "used_tokens").filter(kind=CounterKind.QUOTA))
    assert used == {"model:gpt-4o": 1_000, "group:gpt-4o": 500}
    assert PeriodCounter.objects.get(kind=CounterKind.COMMITMENT).used_tokens == 2_000


def test_claims_roll_back_with_the_callers_transaction(plan_org):
    usage = rating.Usage("gpt-4o", input_tokens=700)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.usage_rate(organization_id=plan_org.pk, usage=usage, at=NOW)
        raise RuntimeError("the settle failed")
    assert PeriodCounter.objects.get(scope_key="model:gpt-4o", kind=CounterKind.QUOTA).used_tokens == 0


def test_a_closed_period_grants_nothing(plan_org):
    PeriodCounter.objects.filter(kind=CounterKind.QUOTA).update(closed_at=NOW)
    rated = services.usage_rate(organization_id=plan_org.pk, usage=rating.Usage("gpt-4o", 100), at=NOW)
    assert (rated.quota_tokens, rated.commitment_tokens) == (0, 100)


def test_pay_as_you_go_touches_no_database(book, org_b, django_assert_num_queries):
    ctx = selectors.pricing_context_get(organization_id=org_b.pk, model_slug="gpt-4o", at=NOW)
    with django_assert_num_queries(0):
        rated = services.usage_rate(organization_id=org_b.pk, usage=rating.Usage("gpt-4o", 10), at=NOW, context=ctx)
    assert rated.credit_nano == 25_000


def test_a_plan_usage_costs_one_statement_per_allowance_it_draws(plan_org, django_assert_num_queries):
    ctx = selectors.pricing_context_get(organization_id=plan_org.pk, model_slug="gpt-4o", at=NOW)
    with django_assert_num_queries(1):
        services.usage_rate(organization_id=plan_org.pk, usage=rating.Usage("gpt-4o", 10), at=NOW, context=ctx)


@pytest.fixture
async def aconn():
    pool = await pg.pool()
    async with pool.connection() as conn:
        yield conn
    await pg.pool_close()
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_async_and_sync_paths_claim_the_same(aconn, plan_org):
    usage = rating.Usage("gpt-4o", input_tokens=1_000, output_tokens=800)
    ctx = await sync_to_async(selectors.pricing_context_get)(organization_id=plan_org.pk, model_slug="gpt-4o", at=NOW)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        await services.ausage_rate(aconn, usage=usage, at=NOW, context=ctx)
    async with aconn.transaction():
        first = await services.ausage_rate(aconn, usage=usage, at=NOW, context=ctx)
    second = await sync_to_async(services.usage_rate)(organization_id=plan_org.pk, usage=usage, at=NOW, context=ctx)
    assert (first.quota_tokens, first.commitment_tokens) == (1_500, 300)
    assert (second.quota_tokens, second.commitment_tokens) == (0, 1_700)
    # A rolled-back async transaction leaves the counters as they were.
    async with aconn.transaction(force_rollback=True):
        third = await services.ausage_rate(aconn, usage=usage, at=NOW, context=ctx)
    assert third.credit_nano > 0
    used = await sync_to_async(lambda: PeriodCounter.objects.get(kind=CounterKind.COMMITMENT).used_tokens)()
    assert used == 2_000
