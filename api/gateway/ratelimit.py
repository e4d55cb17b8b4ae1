"""Rate limits: requests and tokens per minute, per API key and per organization, checked in one Redis call.

Each limit is a token bucket holding up to a minute's allowance and refilling continuously (limit / 60 s), so a
client may burst up to its limit and then goes at the limit's pace. One Lua script checks every bucket a request
touches and takes from all of them or from none, atomically, so concurrent requests across processes never
overshoot. The token cost of a request is counted as OpenAI does: prompt tokens plus max_tokens (the most it can
use); what it did not use is given back after it settles (`refund`).

Limits: the organization's from its plan (PricingContext.requests_per_minute / tokens_per_minute), else the
GATEWAY_ORG_* settings; a key's its own (ApiKey.requests_per_minute / tokens_per_minute, set per key), else
GATEWAY_KEY_* (0: none). Throughput reserved by a commitment
(PricingContext.reserved_tokens_per_minute) is a bucket of its own per organization and model group, used first:
a request it covers does not count against the organization's shared token limit.

Without Redis (the quickstart) the same buckets live in process memory: exact for the single process it runs.
If Redis fails (down, unreachable, or slower than its 2-second timeouts), requests are let through unchecked: limits
protect capacity, credit is guarded by the ledger. The process then leaves Redis alone for a second (core.outage)
(so an outage adds no wait to each request) before it asks again, and logs the outage once, and its end.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from billing.metering.callers import AuthenticatedKey
from billing.pricing.rating import PricingContext
from core.background import background
from core.outage import Outage

logger = logging.getLogger(__name__)

# KEYS: the buckets. ARGV: now_ms (0: use the server's clock), reserved index, fallback index (1-based; 0: none),
# then per bucket: capacity, cost. The reserved bucket, when it can pay, is used instead of the fallback bucket.
# Returns {admitted (1/0), wait_ms, level of each bucket after the call (floored)}.
_ADMIT = """
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local reserved = tonumber(ARGV[2])
local fallback = tonumber(ARGV[3])
local n = #KEYS
local level, cap, cost = {}, {}, {}
for i = 1, n do
  cap[i] = tonumber(ARGV[2 + 2 * i])
  cost[i] = tonumber(ARGV[3 + 2 * i])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  if v[1] then
    level[i] = math.min(cap[i], tonumber(v[1]) + (now - tonumber(v[2])) * cap[i] / 60000)
  else
    level[i] = cap[i]
  end
end
local use_reserved = reserved > 0 and level[reserved] >= cost[reserved]
local wait = 0
local admitted = 1
for i = 1, n do
  local skip = (i == reserved and not use_reserved) or (i == fallback and use_reserved)
  if not skip and level[i] < cost[i] then
    admitted = 0
    wait = math.max(wait, (cost[i] - level[i]) * 60000 / cap[i])
  end
end
local out = {admitted, math.ceil(wait)}
for i = 1, n do
  local skip = (i == reserved and not use_reserved) or (i == fallback and use_reserved)
  if admitted == 1 and not skip and cost[i] > 0 then
    level[i] = level[i] - cost[i]
    redis.call('HSET', KEYS[i], 'l', tostring(level[i]), 't', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap[i] - level[i]) * 60000 / cap[i]) + 1000)
  end
  out[2 + i] = math.floor(level[i])
end
if admitted == 1 and use_reserved then out[2] = -1 end
return out
"""

# Give `amount` back to each bucket in KEYS (ARGV: now_ms or 0, amount, then each bucket's capacity).
_REFUND = """
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local amount = tonumber(ARGV[2])
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 + i])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  if v[1] then
    local level = math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / 60000 + amount)
    redis.call('HSET', KEYS[i], 'l', tostring(level), 't', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) * 60000 / cap) + 1000)
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    capacity: int  # per minute
    cost: int
    kind: str  # "requests" | "tokens"


@dataclass(slots=True)
class Admission:
    admitted: bool
    headers: dict[str, str]
    retry_after_seconds: float = 0.0
    message: str = ""
    too_large: bool = False
    # Token buckets the request was charged in (for the refund after it settles).
    charged: list[Bucket] = field(default_factory=list)
    tokens: int = 0


def _duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{round(seconds)}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True, slots=True)
class Draw:
    """What a request of `tokens` draws on: its buckets, and the (1-based) indexes of the reserved bucket and of
    the shared bucket it stands in for (0: none)."""

    buckets: list[Bucket]
    reserved: int
    fallback: int
    tokens: int


def draw_for(*, key: AuthenticatedKey, context: PricingContext, tokens: int) -> Draw:
    """The buckets a request of `tokens` draws on (see Draw)."""
    org = context.organization_id
    buckets = [
        Bucket(f"rl:o:{org}:r", context.requests_per_minute or settings.GATEWAY_ORG_REQUESTS_PER_MINUTE, 1, "requests"),
        Bucket(f"rl:o:{org}:t", context.tokens_per_minute or settings.GATEWAY_ORG_TOKENS_PER_MINUTE, tokens, "tokens"),
    ]
    # The key's own limits, else the operator's defaults for every key; inside the organization's, since a call
    # draws on both.
    key_requests = key.requests_per_minute or settings.GATEWAY_KEY_REQUESTS_PER_MINUTE
    key_tokens = key.tokens_per_minute or settings.GATEWAY_KEY_TOKENS_PER_MINUTE
    if key_requests:
        buckets.append(Bucket(f"rl:k:{key.id}:r", key_requests, 1, "requests"))
    if key_tokens:
        buckets.append(Bucket(f"rl:k:{key.id}:t", key_tokens, tokens, "tokens"))
    reserved = fallback = 0
    if context.reserved_tokens_per_minute > 0:
        group = context.model_group or context.model_slug
        buckets.append(Bucket(f"rl:o:{org}:g:{group}:t", context.reserved_tokens_per_minute, tokens, "tokens"))
        reserved, fallback = len(buckets), 2
    return Draw(buckets, reserved, fallback, tokens)


def _headers(buckets: list[Bucket], levels: list[int], skipped: set[int]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        applied = [(i, b) for i, b in enumerate(buckets) if b.kind == kind and i not in skipped]
        if not applied:
            continue
        # The tightest bucket speaks for this kind: the one with the smallest share left.
        i, bucket = min(applied, key=lambda ib: levels[ib[0]] / ib[1].capacity)
        left = max(0, levels[i])
        headers[f"x-ratelimit-limit-{kind}"] = str(bucket.capacity)
        headers[f"x-ratelimit-remaining-{kind}"] = str(left)
        headers[f"x-ratelimit-reset-{kind}"] = _duration((bucket.capacity - left) * 60 / bucket.capacity)
    return headers


class _LocalBuckets:
    """The same buckets in process memory, for a deployment without Redis (one process)."""

    def __init__(self) -> None:
        self.levels: dict[str, tuple[float, float]] = {}

    def _level(self, bucket: Bucket, now: float) -> float:
        stored = self.levels.get(bucket.key)
        if stored is None:
            return float(bucket.capacity)
        level, at = stored
        return min(float(bucket.capacity), level + (now - at) * bucket.capacity / 60)

    def admit(self, buckets: list[Bucket], reserved: int, fallback: int) -> list[int]:
        now = time.monotonic()
        levels = [self._level(b, now) for b in buckets]
        use_reserved = reserved > 0 and levels[reserved - 1] >= buckets[reserved - 1].cost
        skip = {reserved - 1} if not use_reserved else {fallback - 1}
        skip.discard(-1)
        wait = 0.0
        for i, bucket in enumerate(buckets):
            if i not in skip and levels[i] < bucket.cost:
                wait = max(wait, (bucket.cost - levels[i]) * 60 / bucket.capacity)
        if wait:
            return [0, math.ceil(wait * 1000), *map(math.floor, levels)]
        for i, bucket in enumerate(buckets):
            if i not in skip and bucket.cost:
                levels[i] -= bucket.cost
                self.levels[bucket.key] = (levels[i], now)
        return [1, -1 if use_reserved else 0, *map(math.floor, levels)]

    def refund(self, buckets: list[Bucket], amount: int) -> None:
        now = time.monotonic()
        for bucket in buckets:
            if bucket.key in self.levels:
                level = min(float(bucket.capacity), self._level(bucket, now) + amount)
                self.levels[bucket.key] = (level, now)


_local = _LocalBuckets()


@dataclass(frozen=True, slots=True)
class _Scripts:
    client: aioredis.Redis
    admit: AsyncScript
    refund: AsyncScript


_clients: dict[asyncio.AbstractEventLoop, _Scripts] = {}


def _redis() -> _Scripts | None:
    """This event loop's Redis client and scripts (None without Redis)."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    scripts = _clients.get(loop)
    if scripts is None:
        # A bounded pool that makes a burst wait for a free connection rather than fail.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=64, timeout=2, socket_timeout=2, socket_connect_timeout=2
        )
        client = aioredis.Redis(connection_pool=pool)
        scripts = _Scripts(client, client.register_script(_ADMIT), client.register_script(_REFUND))
        _clients[loop] = scripts
    return scripts


async def redis_close() -> None:
    scripts = _clients.pop(asyncio.get_running_loop(), None)
    if scripts is not None:
        await scripts.client.aclose()


# Redis after a failure: admissions do not ask it for a moment (core.outage). Per process, like the clients.
redis_outage = Outage(
    "the rate limiter", means="rate limits not checked: calls are let through", retry_seconds=1.0, logger=logger
)


def local_reset() -> None:
    _local.levels.clear()
    _seen.clear()


# What this process last heard from Redis of each bucket: {bucket key: (level, time.monotonic())}. It only
# decides whether a call may ask for its admission and its hold at once (`roomy`); Redis alone admits.
_seen: dict[str, tuple[float, float]] = {}
SEEN_MAX_ENTRIES = 50_000
# A bucket has room for a call when it was last seen, at most a minute ago, holding ROOM times the call's cost
# (counting what it refilled since): other processes draw on it too, so a small margin would be often wrong.
ROOM = 4
SEEN_SECONDS = 60.0


def _see(buckets: list[Bucket], levels: list[int]) -> None:
    if len(_seen) >= SEEN_MAX_ENTRIES:
        _seen.clear()
    now = time.monotonic()
    for bucket, level in zip(buckets, levels, strict=True):
        _seen[bucket.key] = (float(level), now)


def _has_room(bucket: Bucket, now: float) -> bool:
    seen = _seen.get(bucket.key)
    if seen is None or now - seen[1] > SEEN_SECONDS:
        return False
    level = min(float(bucket.capacity), seen[0] + (now - seen[1]) * bucket.capacity / 60)
    return level >= ROOM * bucket.cost


def roomy(draw: Draw) -> bool:
    """Whether the buckets of `draw` had plenty of room when this process last heard of them from Redis (never for
    buckets it has not heard of lately; without Redis it hears of none, and admission waits on nothing)."""
    buckets, reserved, fallback = draw.buckets, draw.reserved, draw.fallback
    now = time.monotonic()
    pair = {reserved - 1, fallback - 1} if reserved else set()
    if not all(_has_room(bucket, now) for i, bucket in enumerate(buckets) if i not in pair):
        return False
    # The reserved bucket pays when it can, else the shared one it stands in for: either will do.
    return not reserved or _has_room(buckets[reserved - 1], now) or _has_room(buckets[fallback - 1], now)


def _too_large(buckets: list[Bucket], reserved: int, fallback: int, tokens: int) -> int | None:
    """The per-minute token limit a request of `tokens` can never fit in, even with a full bucket (or None)."""
    for i, bucket in enumerate(buckets):
        if bucket.kind != "tokens" or bucket.capacity >= tokens or i == reserved - 1:
            continue
        if i == fallback - 1 and buckets[reserved - 1].capacity >= tokens:
            continue
        return bucket.capacity
    return None


async def admit(draw: Draw) -> Admission:
    """Take one request and its tokens from every bucket of `draw`, or explain why not."""
    buckets, reserved, fallback, tokens = draw.buckets, draw.reserved, draw.fallback, draw.tokens
    exceeded = _too_large(buckets, reserved, fallback, tokens)
    if exceeded is not None:
        return Admission(
            False,
            {},
            message=(
                f"This request may use {tokens} tokens (prompt plus max_tokens), more than the {exceeded} "
                "tokens per minute allowed; lower max_tokens or shorten the prompt."
            ),
            too_large=True,
        )
    scripts = _redis()
    if scripts is None:
        result = _local.admit(buckets, reserved, fallback)
    else:
        if not redis_outage.usable():
            return Admission(True, {})  # Redis failed a moment ago: let through unchecked, without waiting on it
        try:
            args = [0, reserved, fallback, *(v for b in buckets for v in (b.capacity, b.cost))]
            result = [int(v) for v in await scripts.admit(keys=[b.key for b in buckets], args=args)]
        except (aioredis.RedisError, OSError) as exc:
            redis_outage.failed(exc)
            return Admission(True, {})
        redis_outage.answered()
        _see(buckets, result[2:])
    admitted, wait_ms, levels = result[0], result[1], result[2:]
    used_reserved = admitted == 1 and wait_ms == -1
    skipped = {fallback - 1} if used_reserved else ({reserved - 1} if reserved else set())
    headers = _headers(buckets, levels, skipped)
    if not admitted:
        retry = wait_ms / 1000
        headers["retry-after"] = str(max(1, math.ceil(retry)))
        headers["retry-after-ms"] = str(wait_ms)
        return Admission(
            False,
            headers,
            retry_after_seconds=retry,
            message=(
                "Rate limit reached for requests or tokens per minute; "
                f"try again in {_duration(retry)}. Limits: {headers.get('x-ratelimit-limit-requests')} "
                f"requests and {headers.get('x-ratelimit-limit-tokens')} tokens per minute."
            ),
        )
    charged = [b for i, b in enumerate(buckets) if b.kind == "tokens" and i not in skipped]
    return Admission(True, headers, charged=charged, tokens=tokens)


# Refunds are gathered for REFUND_BATCH_SECONDS and given back in one round trip, one script call per set of
# buckets: under load, one Redis round trip serves many requests instead of one each.
REFUND_BATCH_SECONDS = 0.05
# Per event loop: {((bucket key, capacity), ...): tokens to give back}.
_refunds: dict[asyncio.AbstractEventLoop, dict[tuple[tuple[str, int], ...], int]] = {}


async def _refund_flush(loop: asyncio.AbstractEventLoop) -> None:
    await asyncio.sleep(REFUND_BATCH_SECONDS)
    batch = _refunds.pop(loop, {})
    scripts = _redis()
    if scripts is None:
        for group, amount in batch.items():
            _local.refund([Bucket(key, capacity, 0, "tokens") for key, capacity in group], amount)
        return
    refunds = [
        ([key for key, _ in group], [0, amount, *(capacity for _, capacity in group)])
        for group, amount in batch.items()
    ]
    try:
        # One round trip for the whole batch (each key, and organization, is a group of its own). The script is
        # called by its digest without the pipeline's own check that Redis has it, which would cost a round trip
        # more; a Redis that lost it (restarted) answers NOSCRIPT, and those refunds load it and go again.
        async with scripts.client.pipeline(transaction=False) as pipe:
            for keys, args in refunds:
                pipe.evalsha(scripts.refund.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        for (keys, args), result in zip(refunds, results, strict=True):
            if isinstance(result, NoScriptError):
                await scripts.refund(keys=keys, args=args)
            elif isinstance(result, Exception):
                logger.warning("a rate-limit refund was lost, Redis failed: %s", result)
    except (aioredis.RedisError, OSError) as exc:
        redis_outage.failed(exc)
        logger.warning("rate-limit refunds lost: %r", exc)


def refund(admission: Admission, *, used_tokens: int) -> None:
    """Give back (within REFUND_BATCH_SECONDS) the tokens an admitted request reserved but did not use."""
    amount = admission.tokens - max(0, used_tokens)
    if amount <= 0 or not admission.charged:
        return
    loop = asyncio.get_running_loop()
    batch = _refunds.get(loop)
    if batch is None:
        batch = _refunds[loop] = {}
        background(_refund_flush(loop))
    group = tuple((bucket.key, bucket.capacity) for bucket in admission.charged)
    batch[group] = batch.get(group, 0) + amount
