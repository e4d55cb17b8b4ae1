"""The gateway's in-process cache (api.gateway.cache): expiry, shared loads, and what a clear() does to a load
already running. The cache's clock is a hand-moved one, so the tests do not depend on the machine's speed."""

import asyncio

import pytest

from api.gateway import cache as cache_module
from api.gateway.cache import TTLCache

TTL = 5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Source:
    """What the cache loads from: counts its loads, and can hold them until released."""

    def __init__(self) -> None:
        self.version = 1
        self.loads = 0
        self.gate: asyncio.Event | None = None

    async def load(self) -> str:
        self.loads += 1
        read = f"v{self.version}"  # what the database said when the query ran
        if self.gate is not None:
            await self.gate.wait()
        return read


@pytest.fixture
def clock(monkeypatch, settings) -> Clock:
    settings.GATEWAY_CACHE_SECONDS = TTL
    fake = Clock()
    monkeypatch.setattr(cache_module, "time", fake)
    return fake


async def test_an_entry_answers_until_it_expires_and_concurrent_misses_share_one_load(clock):
    cache: TTLCache[str] = TTLCache("test")
    source = Source()
    source.gate = asyncio.Event()
    reads = [asyncio.ensure_future(cache.get("k", source.load)) for _ in range(20)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*reads) == ["v1"] * 20
    assert source.loads == 1

    source.version, source.gate = 2, None
    clock.now += TTL - 0.01
    assert await cache.get("k", source.load) == "v1"
    clock.now += 0.01  # expired: never a value older than GATEWAY_CACHE_SECONDS
    assert await cache.get("k", source.load) == "v2"
    assert source.loads == 2


async def test_a_load_running_when_the_cache_is_cleared_is_neither_kept_nor_handed_to_later_readers(clock):
    """Staff change a route and the cache is cleared after commit. A load that read the old row before that
    must not put it back for GATEWAY_CACHE_SECONDS, nor answer a request that arrives after the clear."""
    cache: TTLCache[str] = TTLCache("test")
    source = Source()
    source.gate = asyncio.Event()
    before = asyncio.ensure_future(cache.get("k", source.load))
    await asyncio.sleep(0)

    source.version = 2
    cache.clear()
    after = asyncio.ensure_future(cache.get("k", source.load))
    await asyncio.sleep(0)
    source.gate.set()
    assert await before == "v1"  # its own caller asked before the change
    assert await after == "v2"
    assert await cache.get("k", source.load) == "v2"
    assert source.loads == 2

    clock.now += TTL  # expired; a load alone, cleared while it runs
    source.gate = asyncio.Event()
    alone = asyncio.ensure_future(cache.get("k", source.load))
    await asyncio.sleep(0)
    source.version = 3
    cache.clear()
    source.gate.set()
    assert await alone == "v2"
    assert await cache.get("k", source.load) == "v3"
    assert source.loads == 4
