"""The gateway's test bench: the product on a real socket (live_url), a stand-in model server on another, the
default price book, an organization with credit and a key, and the official openai SDK pointed at the gateway."""

import asyncio
import gc
import secrets
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import openai
import psycopg
import pytest
from django.db import connection

from accounts.models import ApiKey
from accounts.services import apikey_create
from api.gateway import ratelimit, upstreams
from api.gateway.cache import caches_clear
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from billing.metering.budgets.services import key_spend_limit_set
from billing.metering.models import Budget
from billing.pricing import rating
from billing.pricing.services import price_book_seed
from billing.usage.models import UsageRecord
from core import background, pg
from core.money import parse_amount
from tests.api.gateway.standin import StandIn
from tests.harness import LiveServer

# llama-3.1-8b-instruct: cl100k_base, 0.18 USD per 1M input and output tokens; the stand-in counts with cl100k.
MODEL = "llama-3.1-8b-instruct"


def usd(amount: str) -> int:
    return parse_amount(amount, allow_zero=True)


@pytest.fixture(autouse=True)
def _gateway_state() -> Iterator[None]:
    caches_clear()
    ratelimit.local_reset()
    yield
    caches_clear()


@pytest.fixture(scope="session", autouse=True)
def gateway_session(live_server_session: LiveServer) -> Iterator[LiveServer]:
    """The live server, whose gateway pools (PostgreSQL, model servers, Redis) are closed on its own event loop
    before the test database is dropped (an open pool connection would keep the database in use)."""
    yield live_server_session

    async def close() -> None:
        await background.drain()
        await pg.pool_close()
        await upstreams.client_close()
        await ratelimit.redis_close()

    loop = _server_loop()
    if loop is not None:
        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=30)
    # Django connections of finished requests can linger in reference cycles (contexts copied into tasks) until
    # collected; the test database cannot be dropped while they are open.
    gc.collect()
    # What is left is an idle connection of a finished request's context (Django's async ORM, e.g. the API key's
    # last-used touch), unreachable from here: end it, or the test database cannot be dropped.
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
        )


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The live server's event loop: the running one its pools were opened on."""
    loops = [*pg._pools, *upstreams._clients, *ratelimit._clients]
    running = [loop for loop in loops if loop.is_running()]
    return running[0] if running else None


@pytest.fixture(scope="session")
def standin_session() -> Iterator[StandIn]:
    server = StandIn()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def standin(standin_session: StandIn, settings) -> Iterator[StandIn]:
    """The stand-in model server, reset, as the default upstream (UPSTREAM_BASE_URL) for this test."""
    standin_session.reset()
    settings.UPSTREAM_BASE_URL = f"{standin_session.url}/v1"
    settings.UPSTREAM_API_KEY = "sk-upstream-secret"
    settings.UPSTREAM_TIMEOUT_SECONDS = 10
    yield standin_session
    standin_session.release()


@pytest.fixture
def priced(live_url: str, gateway_session: LiveServer) -> None:
    price_book_seed()


@pytest.fixture
def wallet(org_a, priced) -> Wallet:
    return ledger.wallet_get_or_create(organization_id=org_a.pk)


@pytest.fixture
def funded(org_a, wallet) -> Wallet:
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("10"), idempotency_key="fund", actor="test"
    )
    wallet.refresh_from_db()
    return wallet


@pytest.fixture
def secret(org_a) -> str:
    return apikey_create(organization_id=org_a.pk, name="ci")[1]


@pytest.fixture
def client(live_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0, timeout=30)


@pytest.fixture
def aclient(live_url: str, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0, timeout=60)


def limited_key(*, organization_id: int, amount_nano: int, period: str, name: str = "capped") -> tuple[ApiKey, str]:
    """A key with a spend limit (its hard budget), as the key form makes it: (key, secret)."""
    key, secret = apikey_create(organization_id=organization_id, name=name)
    key_spend_limit_set(
        organization_id=organization_id, api_key_id=key.pk, actor="test", amount_nano=amount_nano, period=period
    )
    return key, secret


def key_limit(key: ApiKey) -> Budget:
    """The key's spend limit (its one hard budget)."""
    return Budget.objects.get(scope="api_key", api_key=key, mode="hard")


def wait_for(predicate: Callable[[], object], *, timeout: float = 10.0) -> None:
    """Poll until `predicate()` is true (settles after a stream or a disconnect run in the server's background)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def records(**filters: object) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(**filters).order_by("id"))


def balances(wallet: Wallet) -> tuple[int, int]:
    wallet.refresh_from_db()
    return wallet.available_nano, wallet.held_nano


def reconciled(wallet: Wallet) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return ledger_selectors.wallet_reconcile(wallet_id=wallet.pk)


class Limits:
    """The rate limits of an organization and a key no other test uses, with `limits` from its plan; `draw(tokens)`
    is what a call of that many tokens draws on."""

    def __init__(self, **limits: int):
        self.organization_id = secrets.randbelow(10**9) + 10**9
        self.key = SimpleNamespace(
            id=secrets.randbelow(10**9) + 10**9, requests_per_minute=None, tokens_per_minute=None
        )
        self.context = rating.PricingContext(
            organization_id=self.organization_id,
            model_slug=MODEL,
            model_group="open-weight",
            currency="USD",
            prices=rating.Prices(None, 1, 1, 1),
            **limits,  # type: ignore[arg-type]
        )

    def draw(self, tokens: int) -> ratelimit.Draw:
        return ratelimit.draw_for(key=self.key, context=self.context, tokens=tokens)  # type: ignore[arg-type]
