"""What one call costs on the hot path, counted rather than timed: PostgreSQL round trips (through a counting
TCP proxy between the gateway's pool and the server), ORM queries and Redis commands."""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from unittest import mock

import openai
import psycopg
import pytest
import redis.asyncio
from django.db import connections
from django.db.backends import utils as db_utils
from psycopg.conninfo import make_conninfo

from accounts.models import ApiKey
from billing.metering.budgets import services as budget_services
from billing.metering.budgets.services import budget_create
from billing.metering.models import BudgetSpend
from core import pg
from tests.api.gateway.conftest import MODEL, _server_loop, key_limit, limited_key, usd
from tests.harness import free_port

MESSAGES = [{"role": "user", "content": "hi"}]


class RoundTripProxy:
    """A TCP proxy to PostgreSQL (on TCP, or on the Unix socket an embedded server listens on) that counts round
    trips of the gateway's pool connections (those whose startup message names the pool's application_name): each
    time such a client speaks again after the server answered."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self.round_trips = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        if host.startswith("/"):  # a socket folder (the embedded PostgreSQL of `make test` without a server)
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        state = {"counted": False, "server_spoke": True}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool) -> None:
            try:
                while data := await source.read(65536):
                    if from_client:
                        # The startup message (after libpq's SSL request) names the application.
                        state["counted"] = state["counted"] or b"token-billing-gateway" in data
                        if state["counted"] and state["server_spoke"]:
                            self.round_trips += 1
                        state["server_spoke"] = False
                    else:
                        state["server_spoke"] = True
                    sink.write(data)
                    await sink.drain()
            finally:
                with contextlib.suppress(Exception):  # the loop may be gone at interpreter exit
                    sink.close()

        await asyncio.gather(
            pump(reader, upstream_writer, True), pump(upstream_reader, writer, False), return_exceptions=True
        )

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(
            timeout=10
        )

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _reopen_pool() -> None:
    """Close the live server's pool so the next call opens one with the current connection settings."""
    loop = _server_loop()
    if loop is not None:
        asyncio.run_coroutine_threadsafe(pg.pool_close(), loop).result(timeout=30)


@pytest.fixture
def proxied(live_url: str, funded, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTripProxy]:
    """The gateway's pool (only it: Django's own connections are left alone) connected through the proxy."""
    database = connections.settings["default"]
    proxy = RoundTripProxy(database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432))
    proxy.start()
    direct = pg.conninfo
    _reopen_pool()
    monkeypatch.setattr(
        pg, "conninfo", lambda alias="default": make_conninfo(direct(alias), host="127.0.0.1", port=proxy.port)
    )
    try:
        yield proxy
    finally:
        monkeypatch.setattr(pg, "conninfo", direct)
        _reopen_pool()
        proxy.stop()


def measure(client: openai.OpenAI, proxy: RoundTripProxy, calls: int) -> tuple[float, int, int]:
    """(PostgreSQL round trips per call, ORM queries, Redis commands) over `calls` calls after a warm-up."""
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    queries = 0
    commands = 0
    execute, execute_command = db_utils.CursorWrapper.execute, redis.asyncio.Redis.execute_command

    def counted_execute(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(self, *args, **kwargs)

    async def counted_command(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal commands
        if args and str(args[0]).upper() in ("EVALSHA", "EVAL"):
            commands += 1
        return await execute_command(self, *args, **kwargs)

    before = proxy.round_trips
    with (
        mock.patch.object(db_utils.CursorWrapper, "execute", counted_execute),
        mock.patch.object(redis.asyncio.Redis, "execute_command", counted_command),
    ):
        for _ in range(calls):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    return (proxy.round_trips - before) / calls, queries, commands


def ledger_round_trips(proxy: RoundTripProxy, wallet_id: int) -> tuple[int, int]:
    """What the ledger's own async steps cost, through the same proxy: (ahold_place, ahold_settle)."""
    from billing.ledger import services as ledger

    async def run() -> tuple[int, int]:
        conninfo = pg.conninfo()  # through the proxy (see `proxied`)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, prepare_threshold=0) as conn:
            costs = (0, 0)
            for attempt in range(2):  # the second time, with the statements prepared, as on a warm pool
                before = proxy.round_trips
                placed = await ledger.ahold_place(
                    conn, wallet_id=wallet_id, amount_nano=1000, idempotency_key=f"rt-{attempt}", actor="t"
                )
                middle = proxy.round_trips
                await ledger.ahold_settle(conn, hold_id=placed.hold_id, status="captured", captured_nano=10, actor="t")
                costs = (middle - before, proxy.round_trips - middle)
            return costs

    return asyncio.run(run())


def test_a_call_costs_the_ledgers_round_trips_no_orm_query_and_one_redis_call(client, funded, proxied, standin):
    place, settle = ledger_round_trips(proxied, funded.pk)
    round_trips, queries, commands = measure(client, proxied, 10)
    # The hold is one statement; the settle is the ledger's ahold_settle with the usage record attached to its
    # statement: the gateway adds no round trip of its own.
    assert place == 1
    assert round_trips == place + settle
    # No ORM on the request's path; the after-debit hook may load the organization's auto top-up settings into
    # its cache once, off that path.
    assert queries <= 1
    assert 10 <= commands <= 20  # one rate-limit check per call; refunds are batched after the answers


def test_a_key_with_a_spend_limit_costs_no_round_trip_more(live_url, org_a, funded, proxied, standin):
    # The key's limit is its hard budget: claimed in the statement that places the hold, settled in the settle's.
    place, settle = ledger_round_trips(proxied, funded.pk)
    key, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("5"), period="day")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    checks = 0
    crossed = budget_services.budget_thresholds_crossed

    def counted_check(**kwargs):  # type: ignore[no-untyped-def]
        nonlocal checks
        checks += 1
        return crossed(**kwargs)

    started = time.monotonic()
    with mock.patch.object(budget_services, "budget_thresholds_crossed", counted_check):
        round_trips, queries, _ = measure(client, proxied, 10)
    elapsed = time.monotonic() - started
    assert round_trips == place + settle
    # No ORM on the request's path, as above; off it, what any budget costs: its thresholds are checked after
    # debits, one query at most once a second per organization (and once at the end of a burst).
    assert queries <= 1 + checks
    assert checks <= elapsed + 2
    spend = BudgetSpend.objects.get(budget=key_limit(key))
    assert spend.spent_nano > 0 and spend.held_nano == 0


def test_budgets_cost_no_round_trip_more(client, org_a, funded, proxied, standin):
    # A hard budget for the organization and an alert-only one for the key: each call is claimed from both in the
    # statement that places its hold, and settled against both in the settle's pipeline.
    place, settle = ledger_round_trips(proxied, funded.pk)
    budget_create(
        organization_id=org_a.pk, actor="t", scope="organization", amount_nano=usd("5"), period="day", mode="hard"
    )
    key_id = ApiKey.objects.get(organization=org_a).pk
    budget_create(
        organization_id=org_a.pk, actor="t", scope="api_key", api_key_id=key_id, amount_nano=usd("5"), period="month"
    )
    round_trips, _, _ = measure(client, proxied, 10)
    assert round_trips == place + settle
    assert BudgetSpend.objects.filter(budget__organization=org_a, held_nano=0, spent_nano__gt=0).count() == 2
