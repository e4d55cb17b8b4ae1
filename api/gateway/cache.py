"""A small in-process cache with expiry, for what every request reads and staff rarely change.

The hot path must not query the database for a model's catalogue entry, its route or an organization's pricing
context on every call; each web process keeps them for GATEWAY_CACHE_SECONDS. Concurrent misses of one key on
one event loop share a single load, so a cold start under load costs one query per key, not one per request.

Why not a library: cachetools' TTLCache is synchronous (no shared load for concurrent async misses) and Django's
local-memory cache pickles every value and locks per call; what this one adds (single-flight async loads, and a
clear() that a load already running cannot undo) is the part the gateway needs, in under a hundred lines.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings

V = TypeVar("V")

_registry: list["TTLCache[object]"] = []


class TTLCache(Generic[V]):
    def __init__(self, name: str, *, max_entries: int = 20_000, keep: bool = True):
        self.name = name
        self.max_entries = max_entries
        # keep=False: only concurrent loads of a key are shared; nothing is kept afterwards.
        self.keep = keep
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Future[V]] = {}
        # Bumped by clear(): a load that began before it does not keep what it read, and nobody who asks
        # afterwards is handed its result.
        self._generation = 0
        _registry.append(self)  # type: ignore[arg-type]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._loading.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of `key`, or the result of `load()` (kept for GATEWAY_CACHE_SECONDS)."""
        loop = asyncio.get_running_loop()
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
            pending = self._loading.get((loop, key))
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except _Abandoned:
                continue  # its loader was cancelled (a client went away): load it here instead
        # The load runs in the caller's own task (and so in its request's thread context for the ORM).
        future: asyncio.Future[V] = loop.create_future()
        self._loading[(loop, key)] = future
        generation = self._generation
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # marked as retrieved: there may be nobody waiting
            raise
        finally:
            # Not a load begun after a clear(), which a staff view may call from its own thread meanwhile.
            if self._loading.get((loop, key)) is future:
                self._loading.pop((loop, key), None)
        future.set_result(value)
        ttl = settings.GATEWAY_CACHE_SECONDS
        if ttl > 0 and self.keep and generation == self._generation:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude, but bounded; entries are cheap to load again
            self._entries[key] = (time.monotonic() + ttl, value)
        return value


class _Abandoned(Exception):
    """The load other callers were waiting on was cancelled with its caller."""


def caches_clear() -> None:
    """Forget everything every gateway cache of this process holds (tests; after staff changes)."""
    for cache in _registry:
        cache.clear()
