"""Concurrent claims against PostgreSQL never hand out more included quota or commitment than exists, and
concurrent tier claims still add up to exactly F(period volume).

Threads each hold their own Django connection; the async test runs coroutines on separate psycopg connections
from the gateway's pool. Every request rates inside its own transaction, as the gateway's settle does.
"""

import asyncio
import random
import threading

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from billing.pricing import rating, selectors, services, tiers
from billing.pricing.models import CounterKind, PeriodCounter
from billing.pricing.services import AllowanceSpec
from core import pg
from tests.billing.pricing.conftest import at, fund, usd

pytestmark = pytest.mark.django_db(transaction=True)

NOW = at("2026-05-10 12:00")
THREADS = 8
REQUESTS = 25


@pytest.fixture
def contended(book, org_a):
    with time_machine.travel(NOW, tick=False):
        fund(org_a, "1000.00")
        services.plan_create(
            slug="team",
            name="Team",
            fee_nano=usd("10.00"),
            allowances=[AllowanceSpec(included_tokens=3_000, group="open-weight")],
        )
        services.subscription_create(organization_id=org_a.pk, plan_slug="team", at=NOW)
        offer = services.commitment_offer_create(
            name="open weights 5k",
            group="open-weight",
            committed_tokens_per_month=5_000,
            term_months=1,
            discount_bps=3_000,
            payment="upfront",
            blended_price_micro_per_mtok=180_000,
        )
        services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk, starts_at=NOW)
        services.tier_schedule_create(
            name="open weights volume",
            mode="graduated",
            group="open-weight",
            tiers=[(0, 10_000), (500, 7_000), (1_500, 4_000)],
            effective_from=at("2026-05-01 00:00"),
            now=at("2026-04-20 00:00"),
        )
    return org_a


def _check(ratings: list[rating.Rating], usages: list[rating.Usage], org_id: int) -> None:
    quota = PeriodCounter.objects.get(organization_id=org_id, kind=CounterKind.QUOTA)
    commitment = PeriodCounter.objects.get(organization_id=org_id, kind=CounterKind.COMMITMENT)
    wanted = sum(u.total_tokens for u in usages)
    # Every token is paid exactly once, and the allowances were handed out in full but never beyond.
    assert sum(r.quota_tokens for r in ratings) == quota.used_tokens == min(wanted, 3_000)
    assert sum(r.commitment_tokens for r in ratings) == commitment.used_tokens == min(max(wanted - 3_000, 0), 5_000)
    credit_tokens = sum(
        line.tokens
        for r in ratings
        for line in r.lines
        if line.source == "credit" and line.kind != "priority_surcharge"
    )
    assert credit_tokens == max(wanted - 8_000, 0)
    # Tier claims interleaved in some order; their marginal charges still add up to F(volume) exactly.
    tier = PeriodCounter.objects.get(organization_id=org_id, kind=CounterKind.TIER)
    schedule = (tiers.Tier(0, 10_000), tiers.Tier(500, 7_000), tiers.Tier(1_500, 4_000))
    assert tier.volume_nano == sum(r.extra.get("tier_volume_nano", 0) for r in ratings)
    assert tier.volume_nano > 1_500  # the period went through every tier
    assert sum(r.credit_nano for r in ratings) == tiers.graduated_cost_nano(tier.volume_nano, schedule)


def _usages(seed: int) -> list[rating.Usage]:
    rng = random.Random(seed)
    models = ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct")
    return [
        rating.Usage(rng.choice(models), rng.randint(0, 120), 0, rng.randint(0, 60), rng.choice(rating.SERVICE_TIERS))
        for _ in range(REQUESTS)
    ]


def test_threads_never_overdraw_quota_or_commitment(contended):
    barrier = threading.Barrier(THREADS)
    results: list[list[rating.Rating]] = [[] for _ in range(THREADS)]
    plans = [_usages(seed) for seed in range(THREADS)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for usage in plans[index]:
                with transaction.atomic():
                    results[index].append(services.usage_rate(organization_id=contended.pk, usage=usage, at=NOW))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _check([r for rs in results for r in rs], [u for us in plans for u in us], contended.pk)


async def test_async_connections_never_overdraw_quota_or_commitment(contended):
    pool = await pg.pool()
    plans = [_usages(100 + seed) for seed in range(THREADS)]
    contexts = {
        slug: await sync_to_async(selectors.pricing_context_get)(organization_id=contended.pk, model_slug=slug, at=NOW)
        for slug in ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct")
    }
    start = asyncio.Event()

    async def worker(usages: list[rating.Usage]) -> list[rating.Rating]:
        done = []
        async with pool.connection() as conn:
            await start.wait()
            for usage in usages:
                async with conn.transaction():
                    rated = await services.ausage_rate(conn, usage=usage, at=NOW, context=contexts[usage.model_slug])
                done.append(rated)
        return done

    tasks = [asyncio.create_task(worker(usages)) for usages in plans]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    await pg.pool_close()
    await sync_to_async(_check)([r for rs in results for r in rs], [u for us in plans for u in us], contended.pk)
    await sync_to_async(connections.close_all)()
