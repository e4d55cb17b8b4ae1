"""Races on PostgreSQL: many connections at once on one wallet, through the synchronous services (threads, one
connection each) and the gateway's async path (a psycopg pool). Nothing here is simulated: the database decides."""

import asyncio
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from billing.ledger import selectors, services
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import Grant, Hold, JournalTransaction, Wallet
from core import pg
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


def test_debits_racing_never_spend_more_than_balance_plus_overdraft(org, wallet):
    fund(org, "10.00")
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("2.00"), actor="t")

    def debit(i: int) -> int:
        return services.wallet_debit(
            organization_id=org.pk, amount_nano=usd("0.07"), idempotency_key=f"fee-{i}", actor="t"
        ).pk

    results = in_parallel(debit, 200, workers=16)
    booked = [r for r in results if isinstance(r, int)]
    assert all(isinstance(r, int | InsufficientCredit) for r in results)
    assert len(booked) == 171  # floor(12.00 / 0.07)
    assert JournalTransaction.objects.filter(kind="debit").count() == 171
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.unfunded_nano) == (-usd("1.97"), usd("1.97"))
    assert_reconciled(wallet)


def test_racing_sweepers_expire_a_grant_once(org, wallet):
    now = timezone.now()
    expiring = fund(org, "5.00", kind="promotional", expires_at=now + timedelta(hours=1))
    fund(org, "1.00")
    results = in_parallel(lambda i: services.grants_expire(now=now + timedelta(hours=2)), 12, workers=12)
    assert all(isinstance(r, int) for r in results), results
    assert sorted(results) == [0] * 11 + [usd("5.00")]
    assert JournalTransaction.objects.filter(kind="grant_expiry").count() == 1
    assert Grant.objects.get(pk=expiring).remaining_nano == 0
    wallet.refresh_from_db()
    assert wallet.available_nano == usd("1.00")
    assert_reconciled(wallet)


def test_reversals_racing_holds_never_take_held_credit(org, wallet):
    """Each hold and each reversal needs 1.00 of available credit: of 40 racing for 10.00, exactly 10 get it."""
    grant_id = fund(org, "10.00")

    def hold_or_reverse(i: int) -> str:
        if i % 2:
            services.hold_place(wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key=f"h-{i}", actor="t")
            return "held"
        services.grant_reverse(
            grant_id=grant_id, amount_nano=usd("1.00"), idempotency_key=f"r-{i}", actor="t", reason="correction"
        )
        return "reversed"

    results = in_parallel(hold_or_reverse, 40, workers=16)
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, InsufficientCredit) or getattr(r, "code", None) == "credit_held" for r in refused)
    held, reversed_ = results.count("held"), results.count("reversed")
    assert held + reversed_ == 10
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.held_nano) == (0, held * usd("1.00"))
    assert Grant.objects.get(pk=grant_id).remaining_nano == usd("10.00") - reversed_ * usd("1.00")
    assert_reconciled(wallet)


def test_grants_racing_debits_in_the_overdraft_pay_what_is_owed_first(org, wallet):
    """Whatever the interleaving, credit is either owed or backed by a grant, never both."""
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="t")

    def grant_or_debit(i: int) -> str:
        if i % 4 == 0:
            fund(org, "0.50", key=f"g-{i}")
            return "granted"
        services.wallet_debit(organization_id=org.pk, amount_nano=usd("0.20"), idempotency_key=f"d-{i}", actor="t")
        return "debited"

    results = in_parallel(grant_or_debit, 120, workers=16)
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, InsufficientCredit) for r in refused)
    assert results.count("granted") == 30
    wallet.refresh_from_db()
    assert wallet.available_nano == usd("15.00") - results.count("debited") * usd("0.20") >= -usd("5.00")
    remaining = sum(Grant.objects.filter(wallet=wallet).values_list("remaining_nano", flat=True))
    assert (remaining, wallet.unfunded_nano) == (max(wallet.available_nano, 0), max(-wallet.available_nano, 0))
    assert_reconciled(wallet)


def test_grants_racing_on_a_wallet_in_debt_pay_the_debt_once(org, wallet):
    """Every grant reads what is owed under the wallet's lock: twenty at once into a debt of 5.00 pay 5.00 of it
    between them, not 0.50 each (a grant that read the debt before another paid it would pay it again)."""
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="t")
    services.wallet_debit(organization_id=org.pk, amount_nano=usd("5.00"), idempotency_key="debt", actor="t")
    assert Wallet.objects.get(pk=wallet.pk).unfunded_nano == usd("5.00")

    results = in_parallel(lambda i: fund(org, "0.50", key=f"g-{i}"), 20, workers=20)
    assert not [r for r in results if isinstance(r, Exception)]
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.unfunded_nano) == (usd("5.00"), 0)
    # What the grants have left is exactly what the wallet can spend: the debt was paid once, from them.
    assert sum(Grant.objects.filter(wallet=wallet).values_list("remaining_nano", flat=True)) == usd("5.00")
    assert_reconciled(wallet)


def test_overdraft_changes_racing_debits_never_leave_a_debt_above_the_limit(org, wallet):
    fund(org, "1.00")
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="t")

    def debit_or_change_limit(i: int) -> str:
        if i % 4 == 0:
            limit = usd("0.50") if i % 8 == 0 else usd("5.00")
            services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=limit, actor="t")
            return "limit set"
        services.wallet_debit(organization_id=org.pk, amount_nano=usd("0.20"), idempotency_key=f"d-{i}", actor="t")
        return "debited"

    results = in_parallel(debit_or_change_limit, 96, workers=16)
    refused = [r for r in results if isinstance(r, Exception)]
    # A debit beyond the limit of its moment is refused; so is a limit below what is already owed.
    assert all(isinstance(r, InsufficientCredit) or getattr(r, "param", None) == "overdraft_limit" for r in refused)
    wallet.refresh_from_db()
    assert wallet.available_nano == usd("1.00") - results.count("debited") * usd("0.20")
    assert wallet.available_nano >= -wallet.overdraft_limit_nano
    assert_reconciled(wallet)
