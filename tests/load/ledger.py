"""Ledger benchmark: hold+capture pairs per second, on one hot wallet and spread over 1,000 wallets, at 1, 8 and
32 concurrent connections.

Beside each figure, measured in the same run on the same database: the bare SQL a hold and a capture cannot do
without (one conditional UPDATE of the wallet each, nothing else), so the table shows what the ledger's journal,
hold rows, grant allocation and idempotency cost on top.

    python -m tests.load.ledger [--seconds 3]

The ledger runs as the gateway runs it: `ahold_place` and `ahold_settle` on connections of the async pool
(core.pg), each in its own asyncio task. Bare SQL runs on the same kind of connections.
"""

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.load.benchdb import bench_database, percentile

HOLD_NANO = 2_000_000  # a request's worst case: $0.002
CAPTURE_NANO = 700_000
FUNDING_NANO = 10**9 * 10**9  # more than the run can spend

BARE_HOLD = """
UPDATE ledger_wallet
   SET available_nano = available_nano - %(amount)s::bigint, held_nano = held_nano + %(amount)s::bigint
 WHERE id = %(wallet_id)s::bigint AND available_nano - %(amount)s::bigint >= -overdraft_limit_nano
"""
BARE_CAPTURE = """
UPDATE ledger_wallet SET held_nano = held_nano - %(amount)s::bigint,
       available_nano = available_nano + %(amount)s::bigint - %(captured)s::bigint
 WHERE id = %(wallet_id)s::bigint
"""


def wallets_create(count: int) -> list[int]:
    from accounts.models import Organization
    from billing.ledger import services

    ids = []
    organizations = Organization.objects.bulk_create([Organization(name=f"bench {i}") for i in range(count)])
    for organization in organizations:
        services.grant_create(
            organization_id=organization.pk,
            kind="paid",
            amount_nano=FUNDING_NANO,
            idempotency_key=f"bench-{organization.pk}",
            actor="bench",
        )
        ids.append(services.wallet_get_or_create(organization_id=organization.pk).pk)
    return ids


async def run(
    pair: Callable[[Any, int, int], Awaitable[None]], wallets: list[int], connections: int, seconds: float
) -> tuple[float, float, float]:
    """(pairs per second, p50 ms, p99 ms) of `connections` workers doing pairs back to back for `seconds`."""
    from core import pg

    pool = await pg.pool()
    counter = itertools.count()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        async with pool.connection() as conn:
            while time.perf_counter() < deadline:
                n = next(counter)
                started = time.perf_counter()
                await pair(conn, wallets[n % len(wallets)], n)
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return len(latencies) / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


async def bare_pair(conn: Any, wallet_id: int, n: int) -> None:
    await conn.execute(BARE_HOLD, {"wallet_id": wallet_id, "amount": HOLD_NANO})
    await conn.execute(BARE_CAPTURE, {"wallet_id": wallet_id, "amount": HOLD_NANO, "captured": CAPTURE_NANO})


async def ledger_pair(conn: Any, wallet_id: int, n: int) -> None:
    from billing.ledger import services

    placed = await services.ahold_place(
        conn, wallet_id=wallet_id, amount_nano=HOLD_NANO, idempotency_key=f"bench-{next(KEYS)}", actor="bench"
    )
    await services.ahold_settle(
        conn, hold_id=placed.hold_id, status="captured", captured_nano=CAPTURE_NANO, actor="bench"
    )


KEYS = itertools.count()


async def measure(seconds: float) -> list[tuple[str, int, tuple[float, float, float], tuple[float, float, float]]]:
    from asgiref.sync import sync_to_async

    from core import pg

    # Bare SQL gets wallets of its own: it moves their balances without a journal, on purpose.
    rows = []
    for label, count in (("1 (hot)", 1), ("1,000", 1000)):
        bare_wallets = await sync_to_async(wallets_create)(count)
        ledger_wallets = await sync_to_async(wallets_create)(count)
        LEDGER_WALLETS.extend(ledger_wallets)
        for connections in (1, 8, 32):
            bare = await run(bare_pair, bare_wallets, connections, seconds)
            ledger = await run(ledger_pair, ledger_wallets, connections, seconds)
            rows.append((label, connections, bare, ledger))
    await pg.pool_close()
    return rows


LEDGER_WALLETS: list[int] = []


def reconcile_all() -> list[str]:
    from billing.ledger import selectors

    problems = []
    for wallet_id in LEDGER_WALLETS:
        problems += selectors.wallet_reconcile(wallet_id=wallet_id)
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    args = parser.parse_args()
    with bench_database("billing_bench_ledger"):
        from django.conf import settings

        settings.GATEWAY_DB_POOL_SIZE = 32
        rows = asyncio.run(measure(args.seconds))
        problems = reconcile_all()
    print("\nLedger: hold + capture pairs per second (PostgreSQL, async pool, each measurement", args.seconds, "s)")
    print(
        f"| {'wallets':<8} | conns | {'bare SQL pairs/s':>16} | {'ledger pairs/s':>14} | ledger/bare | "
        f"ledger p50 ms | ledger p99 ms |"
    )
    print("|----------|-------|------------------|----------------|-------------|---------------|---------------|")
    for label, connections, bare, ledger in rows:
        print(
            f"| {label:<8} | {connections:>5} | {bare[0]:>16,.0f} | {ledger[0]:>14,.0f} |"
            f" {ledger[0] / bare[0]:>11.0%} | {ledger[1]:>13.2f} | {ledger[2]:>13.2f} |"
        )
    print("journal reconciles with every wallet afterwards:", "yes" if not problems else problems[:5])


if __name__ == "__main__":
    main()
