"""Races on PostgreSQL: many connections at once on one wallet, through the synchronous services (threads, one
connection each) and the gateway's async path (a psycopg pool). Nothing here is simulated: the database decides."""

import asyncio
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from billing.ledger import selectors, services
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import Grant, Hold, JournalTransaction, Wallet
from config import pg
from tests.billing.ledger.conftest import fund, usd

pytestmark = pytest.mark.django_db(transaction=True)


def in_parallel(task: Callable[[int], Any], count: int, *, workers: int = 32) -> list[Any]:
    """Run task(0..count-1) on `workers` threads, each with its own database connection, started together.
    Returns each result, or the exception it raised."""
    barrier = threading.Barrier(min(workers, count))

    def run(index: int) -> Any:
        if index < workers:
            barrier.wait()
        try:
            return task(index)
        except Exception as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(count)))


def assert_reconciled(wallet: Wallet) -> None:
    assert selectors.wallet_reconcile(wallet_id=wallet.pk) == []


def test_200_holds_racing_never_hold_more_than_the_balance(org, wallet):
    fund(org, "100.00")

    def place(i: int) -> int:
        return services.hold_place(
            wallet_id=wallet.pk, amount_nano=usd("0.75"), idempotency_key=f"req-{i}", actor="t"
        ).hold_id

    results = in_parallel(place, 240)
    placed = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, InsufficientCredit)]
    assert len(placed) + len(refused) == 240  # nothing else went wrong
    assert len(placed) == 133  # floor(100 / 0.75)
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.held_nano) == (usd("0.25"), 133 * usd("0.75"))
    assert_reconciled(wallet)


def test_holds_and_captures_racing_with_an_overdraft_stay_within_balance_plus_overdraft(org, wallet):
    fund(org, "50.00")
    fund(org, "30.00", kind="promotional")
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("20.00"), actor="t")
    rng = random.Random(7)
    captures = [rng.randrange(0, usd("1.00") + 1) for _ in range(300)]

    def request(i: int) -> int:
        placed = services.hold_place(
            wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key=f"req-{i}", actor="t"
        )
        if i % 5 == 0:
            services.hold_release(hold_id=placed.hold_id, actor="t")
            return 0
        services.hold_capture(hold_id=placed.hold_id, amount_nano=captures[i], actor="t")
        return captures[i]

    results = in_parallel(request, 300)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, InsufficientCredit)]
    assert unexpected == []
    spent = sum(r for r in results if isinstance(r, int))
    wallet.refresh_from_db()
    assert spent <= usd("100.00")
    assert wallet.held_nano == 0
    assert wallet.available_nano == usd("80.00") - spent >= -usd("20.00")
    assert wallet.unfunded_nano == max(spent - usd("80.00"), 0)
    assert_reconciled(wallet)


def test_the_same_operation_replayed_concurrently_applies_once(org, wallet):
    fund(org, "10.00")
    holds = in_parallel(
        lambda i: (
            services.hold_place(wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="same", actor="t").hold_id
        ),
        20,
    )
    assert len(set(holds)) == 1 and Hold.objects.count() == 1
    captures = in_parallel(
        lambda i: services.hold_capture(hold_id=holds[0], amount_nano=usd("0.40"), actor="t").transaction_id, 20
    )
    assert len(set(captures)) == 1
    grants = in_parallel(
        lambda i: (
            services.grant_create(
                organization_id=org.pk, kind="paid", amount_nano=usd("5.00"), idempotency_key="pi_x", actor="t"
            ).grant.pk
        ),
        20,
    )
    assert len(set(grants)) == 1
    debits = in_parallel(
        lambda i: (
            services.wallet_debit(organization_id=org.pk, amount_nano=usd("0.10"), idempotency_key="fee", actor="t").pk
        ),
        20,
    )
    assert len(set(debits)) == 1
    assert JournalTransaction.objects.filter(kind="debit").count() == 1
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.held_nano) == (usd("14.50"), 0)
    assert_reconciled(wallet)


def test_the_async_path_races_the_sync_path_on_one_wallet(org, wallet):
    """Holds through the gateway's pool and through the services at the same time, captures too."""
    fund(org, "60.00")

    async def gateway_requests() -> list[Any]:
        pool = await pg.pool()

        async def one(i: int) -> Any:
            async with pool.connection() as conn:
                try:
                    placed = await services.ahold_place(
                        conn, wallet_id=wallet.pk, amount_nano=usd("0.50"), idempotency_key=f"a-{i}", actor="t"
                    )
                except InsufficientCredit as exc:
                    return exc
                settled = await services.ahold_settle(
                    conn, hold_id=placed.hold_id, status="captured", captured_nano=usd("0.30"), actor="t"
                )
                return settled.captured_nano

        try:
            return await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            await pg.pool_close()

    def sync_request(i: int) -> Any:
        placed = services.hold_place(wallet_id=wallet.pk, amount_nano=usd("0.50"), idempotency_key=f"s-{i}", actor="t")
        return services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("0.30"), actor="t").captured_nano

    async_results: list[Any] = []
    runner = threading.Thread(target=lambda: async_results.extend(asyncio.run(gateway_requests())))
    runner.start()
    sync_results = in_parallel(sync_request, 200, workers=16)
    runner.join()
    results = async_results + sync_results
    assert all(isinstance(r, int | InsufficientCredit) for r in results), [
        r for r in results if isinstance(r, Exception)
    ]
    spent = sum(r for r in results if isinstance(r, int))
    wallet.refresh_from_db()
    assert spent <= usd("60.00")
    assert (wallet.available_nano, wallet.held_nano) == (usd("60.00") - spent, 0)
    assert sum(Grant.objects.values_list("remaining_nano", flat=True)) == usd("60.00") - spent
    assert_reconciled(wallet)
