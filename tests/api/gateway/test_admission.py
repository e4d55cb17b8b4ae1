"""Admission and hold asked at once: when this process last saw plenty of room in a call's rate limits, the call
asks Redis and PostgreSQL together. A call the limits refuse after all gets the same 429 as ever, and everything
its hold took comes back: credit, the key's spend-limit claim, no usage record."""

import asyncio

import openai
import pytest
import redis
from django.conf import settings as django_settings

from api.gateway import ratelimit
from billing.ledger.models import Hold
from billing.metering.models import BudgetSpend, BudgetSpendHold
from billing.usage.models import UsageRecord
from core import background
from tests.api.gateway.conftest import (
    MODEL,
    Limits,
    _server_loop,
    balances,
    key_limit,
    limited_key,
    reconciled,
    usd,
    wait_for,
)

MESSAGES = [{"role": "user", "content": "Hello there"}]


def background_done() -> None:
    """Wait for the live server's holds and settles in flight (a hold placed beside a refused admission may still be
    on its way when the 429 arrives)."""
    loop = _server_loop()
    assert loop is not None
    asyncio.run_coroutine_threadsafe(background.drain(), loop).result(timeout=30)


def drain(bucket_key: str) -> None:
    """Empty a bucket in Redis, as other processes' calls would (the scripts read Redis's own clock)."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    seconds, micros = client.time()
    client.hset(bucket_key, mapping={"l": "0", "t": str(seconds * 1000 + micros // 1000)})
    client.close()


@pytest.mark.usefixtures("standin")
@pytest.mark.parametrize("stream", [False, True])
def test_a_call_refused_while_its_hold_was_placed_gets_everything_back(live_url, funded, org_a, settings, stream):
    settings.GATEWAY_ORG_REQUESTS_PER_MINUTE = 10
    limited, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("5"), period="day")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0, timeout=30)
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, stream=stream)
    if stream:
        list(answer)
    wait_for(lambda: UsageRecord.objects.count() == 1 and balances(funded)[1] == 0)
    after_first = balances(funded)
    charged = UsageRecord.objects.get().charge_nano
    assert charged > 0
    # The first admission saw 9 requests left; other processes then use up the organization's minute.
    drain(f"rl:o:{org_a.pk}:r")

    with pytest.raises(openai.RateLimitError) as caught:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, stream=stream)
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    # Its hold was placed beside the admission, then withdrawn: the wallet, the key's limit and the journal are
    # as they were after the first call, and the refused call left no usage record.
    background_done()
    assert [hold.status for hold in Hold.objects.order_by("id")] == ["captured", "released"]
    assert balances(funded) == after_first
    spend = BudgetSpend.objects.get(budget=key_limit(limited))
    assert (spend.spent_nano, spend.held_nano) == (charged, 0)
    assert not BudgetSpendHold.objects.exists()
    assert UsageRecord.objects.count() == 1
    assert reconciled(funded) == []

    # The refusal told this process the limit is reached: the next call asks for admission first, and places
    # no hold at all.
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, stream=stream)
    background_done()
    assert Hold.objects.count() == 2


@pytest.mark.usefixtures("standin")
def test_a_burst_refused_after_its_holds_were_placed_moves_no_money(live_url, funded, org_a, secret, settings):
    settings.GATEWAY_ORG_REQUESTS_PER_MINUTE = 10
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0, timeout=60)

    async def burst() -> list[int]:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
        drain(f"rl:o:{org_a.pk}:r")

        async def one() -> int:
            try:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
            except openai.APIStatusError as exc:
                return exc.status_code
            return 200

        try:
            return await asyncio.gather(*(one() for _ in range(30)))
        finally:
            await client.close()

    statuses = asyncio.run(burst())
    assert statuses == [429] * 30
    background_done()
    assert UsageRecord.objects.count() == 1
    captured = Hold.objects.filter(status="captured").get()
    # Every hold placed beside a refused admission was withdrawn whole.
    assert set(Hold.objects.exclude(pk=captured.pk).values_list("status", flat=True)) <= {"released"}
    assert balances(funded) == (usd("10") - captured.captured_nano, 0)
    assert reconciled(funded) == []


@pytest.mark.django_db
async def test_room_is_judged_from_what_redis_last_said(settings):
    assert settings.REDIS_URL  # real Redis
    ratelimit.local_reset()
    limits = Limits(requests_per_minute=100, tokens_per_minute=10_000)
    try:
        # Buckets this process has not heard of: no guess.
        assert not ratelimit.roomy(limits.draw(100))
        assert (await ratelimit.admit(limits.draw(100))).admitted
        assert ratelimit.roomy(limits.draw(100))
        # Room for four such calls is needed: 9,900 tokens are left, a call of 2,500 is too big a share.
        assert ratelimit.roomy(limits.draw(2_400))
        assert not ratelimit.roomy(limits.draw(2_500))
        # What was heard more than a minute ago is not trusted.
        for bucket_key, (level, at) in list(ratelimit._seen.items()):
            ratelimit._seen[bucket_key] = (level, at - ratelimit.SEEN_SECONDS - 1)
        assert not ratelimit.roomy(limits.draw(100))
        # A refusal says the bucket is empty.
        assert (await ratelimit.admit(limits.draw(100))).admitted
        drain(f"rl:o:{limits.organization_id}:r")
        assert not (await ratelimit.admit(limits.draw(100))).admitted
        assert not ratelimit.roomy(limits.draw(100))
        # It refills at the limit's pace: a tenth of the minute's requests after six seconds.
        for bucket_key, (level, at) in list(ratelimit._seen.items()):
            ratelimit._seen[bucket_key] = (level, at - 6)
        assert ratelimit.roomy(limits.draw(100))
    finally:
        await ratelimit.redis_close()
        ratelimit.local_reset()


@pytest.mark.django_db
async def test_reserved_throughput_or_the_shared_limit_either_gives_room(settings):
    ratelimit.local_reset()
    limits = Limits(requests_per_minute=100, tokens_per_minute=10_000, reserved_tokens_per_minute=1000)
    try:
        assert (await ratelimit.admit(limits.draw(100))).admitted
        # The reserved bucket (900 left) has no room for four calls of 500, the shared one (10,000) has.
        assert ratelimit.roomy(limits.draw(500))
        drain(f"rl:o:{limits.organization_id}:t")
        assert (await ratelimit.admit(limits.draw(100))).admitted
        assert not ratelimit.roomy(limits.draw(500))
        assert ratelimit.roomy(limits.draw(100))
    finally:
        await ratelimit.redis_close()
        ratelimit.local_reset()


@pytest.mark.django_db
async def test_without_redis_admission_is_never_asked_beside_the_hold(settings):
    settings.REDIS_URL = ""
    ratelimit.local_reset()
    limits = Limits(requests_per_minute=100, tokens_per_minute=10_000)
    assert (await ratelimit.admit(limits.draw(100))).admitted
    assert not ratelimit.roomy(limits.draw(100))
