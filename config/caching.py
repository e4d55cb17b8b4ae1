"""Read-through caching for what the hot path reads on every call (an API key, an auto top-up trigger): this
process's memory first, then Django's cache (Redis, shared by all processes), then the database.

The shared cache only saves database reads: when it fails (Redis is down or unreachable), a read falls through
to the database and the value is kept in process memory alone, so requests keep working. Each failure is logged,
at most once per OUTAGE_LOG_SECONDS per process.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from redis.exceptions import RedisError

from config.orm import orm_call

T = TypeVar("T")

logger = logging.getLogger(__name__)

# What Django's Redis cache raises when Redis is down, unreachable or too slow.
CACHE_ERRORS = (RedisError, OSError)
OUTAGE_LOG_SECONDS = 60.0
_last_logged = 0.0


def shared_cache_failed(exc: BaseException) -> None:
    """Note that Django's cache failed (logged, not raised): callers go on without it."""
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= OUTAGE_LOG_SECONDS:
        _last_logged = now
        logger.warning("the shared cache failed, going on without it: %r", exc)


def read_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """The value of `key` from `local`, else from Django's cache (kept `seconds`), else `load()`; None is never
    cached (load a sentinel for "nothing")."""
    value: Any = local.get(key)
    if value is None:
        try:
            value = cache.get(key)
        except CACHE_ERRORS as exc:
            shared_cache_failed(exc)
            value = load()
        else:
            if value is None:
                value = load()
                try:
                    cache.set(key, value, seconds)
                except CACHE_ERRORS as exc:
                    shared_cache_failed(exc)
        local.set(key, value)
    return value  # type: ignore[no-any-return]


async def aread_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """read_through for async code: `load`, synchronous ORM work, runs through orm_call."""
    value: Any = local.get(key)
    if value is None:
        try:
            value = await cache.aget(key)
        except CACHE_ERRORS as exc:
            shared_cache_failed(exc)
            value = await orm_call(load)
        else:
            if value is None:
                value = await orm_call(load)
                try:
                    await cache.aset(key, value, seconds)
                except CACHE_ERRORS as exc:
                    shared_cache_failed(exc)
        local.set(key, value)
    return value  # type: ignore[no-any-return]
