"""A Redis outage does not stop /v1: API keys fall back to the database, rate limits let calls through (credit is
still guarded by the ledger), and every call is charged exactly as with Redis.

The test runs a Redis server of its own (a subprocess), points the product at it, and kills it mid-test.
"""

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis
from django.core.cache import cache

from accounts import keyformat
from accounts.selectors import apikeys as apikey_selectors
from accounts.services import apikey_create, apikey_revoke
from api.gateway import ratelimit
from api.gateway.cache import caches_clear
from billing.usage.models import UsageRecord
from core.caching import shared_cache_outage
from tests.api.gateway.conftest import MODEL, _server_loop, balances, reconciled, records, usd, wait_for
from tests.harness import free_port, wait_for_port

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _rate_limit_clients_reset() -> None:
    """Drop the live server's Redis client for rate limits, so that its next call connects to REDIS_URL as it now is."""
    loop = _server_loop()
    if loop is not None:
        asyncio.run_coroutine_threadsafe(ratelimit.redis_close(), loop).result(timeout=10)
    ratelimit.local_reset()
    ratelimit.redis_outage.reset()
    shared_cache_outage.reset()


@pytest.fixture
def own_redis(settings, live_url) -> Iterator[OwnRedis]:
    redis = OwnRedis()
    settings.REDIS_URL = redis.url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis.url}}
    _rate_limit_clients_reset()
    yield redis
    redis.kill()
    _rate_limit_clients_reset()


def _forget_keys() -> None:
    """This process's memory of API keys (and the gateway's caches), as in a web process that has not seen them."""
    apikey_selectors.local_cache.clear()
    caches_clear()


def test_the_product_really_uses_this_redis_and_it_really_goes(own_redis, client, funded, standin):
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    key_id = keyformat.secret_key_id(client.api_key)
    assert key_id is not None and cache.get(apikey_selectors.apikey_cache_key(key_id)) is not None
    own_redis.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        cache.get("anything")


def test_v1_keeps_working_and_charging_when_redis_dies(own_redis, live_url, org_a, client, funded, standin, caplog):
    # With Redis: rate limits are checked (their headers come back) and the key is cached there.
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert raw.headers["x-ratelimit-limit-requests"]
    own_redis.kill()
    _forget_keys()

    # The same key, no longer in this process's memory: read from the database.
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert raw.http_response.status_code == 200
    assert "x-ratelimit-limit-requests" not in raw.headers  # let through unchecked (logged)
    assert raw.parse().usage.completion_tokens == 5

    # A key created during the outage works too, streamed and on the other endpoints.
    other = openai.OpenAI(
        base_url=f"{live_url}/v1", api_key=apikey_create(organization_id=org_a.pk, name="later")[1], max_retries=0
    )
    chunks = list(
        other.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.completion_tokens == 5
    assert other.embeddings.create(model="text-embedding-3-small", input="hello").usage.prompt_tokens == 1
    assert [m.id for m in other.models.list()]
    headers = {"Authorization": f"Bearer {other.api_key}"}
    assert httpx.get(f"{live_url}/v1/balance", headers=headers).status_code == 200

    # Unknown and revoked keys are still refused.
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_url}/v1", api_key="sk-tb-nope", max_retries=0).models.list()

    # The outage is logged once, not once per call.
    outage = [r for r in caplog.records if "rate limits not checked" in r.getMessage()]
    assert len(outage) == 1

    wait_for(lambda: UsageRecord.objects.count() == 4)
    assert {r.status for r in records()} == {"ok"}
    spent = sum(r.charge_nano for r in records())
    assert spent > 0
    assert balances(funded) == (usd("10") - spent, 0)
    assert reconciled(funded) == []


def test_rate_limits_are_checked_again_once_redis_is_back(own_redis, client, funded, standin):
    own_redis.kill()
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert "x-ratelimit-limit-requests" not in raw.headers
    own_redis.start()
    time.sleep(ratelimit.redis_outage.retry_seconds + 0.1)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert raw.headers["x-ratelimit-limit-requests"]


def test_a_redis_that_hangs_delays_calls_by_seconds_not_forever(
    own_redis, live_url, org_a, funded, standin, monkeypatch
):
    """A Redis that accepts connections but never answers (stopped, or behind a dead link) is given up on after
    the shared cache's and the rate limiter's timeouts, and then left alone for a moment."""
    monkeypatch.setattr(ratelimit.redis_outage, "retry_seconds", 30.0)  # so that a slow machine cannot outlast it
    own_redis.process.send_signal(signal.SIGSTOP)
    fresh = apikey_create(organization_id=org_a.pk, name="during the hang")[1]
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=fresh, max_retries=0, timeout=20)
    started = time.monotonic()
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5).usage.completion_tokens == 5
    assert time.monotonic() - started < 10  # redis-py's 5 s socket timeout, then the rate limiter's 2 s
    _forget_keys()
    started = time.monotonic()
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert time.monotonic() - started < 1  # neither Redis client waits on it again at once


def test_a_key_revoked_during_the_outage_is_refused(own_redis, org_a, client, funded, standin):
    client.models.list()
    own_redis.kill()
    key = org_a.api_keys.get()
    apikey_revoke(api_key_id=key.pk, actor=None)
    _forget_keys()
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
