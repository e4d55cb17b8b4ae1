"""Read-through caching for what the hot path reads on every call (an API key, an auto top-up trigger): this
process's memory first, then Django's cache (Redis, shared by all processes), then the database.

The shared cache only saves database reads: when it fails (Redis is down, unreachable, or does not answer within
its client's socket timeout), a read falls through to the database and the value is kept in process memory
alone, so requests keep working. After a failure the process leaves the shared cache alone for
OUTAGE_RETRY_SECONDS, so an outage costs one wait per process now and then, not one per read; it is logged at most
once per OUTAGE_LOG_SECONDS.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from redis.exceptions import RedisError

from core.orm import orm_call

T = TypeVar("T")

logger = logging.getLogger(__name__)

# What Django's Redis cache raises when Redis is down, unreachable or too slow.
CACHE_ERRORS = (RedisError, OSError)
OUTAGE_RETRY_SECONDS = 5.0
OUTAGE_LOG_SECONDS = 60.0
_outage = {"until": 0.0, "logged": 0.0}


def shared_cache_usable() -> bool:
    """False for a moment after the shared cache failed (see shared_cache_failed)."""
    return _outage["until"] <= time.monotonic()


def shared_cache_failed(exc: BaseException) -> None:
    """Note that Django's cache failed (logged, not raised): callers go on without it for OUTAGE_RETRY_SECONDS."""
    now = time.monotonic()
    _outage["until"] = now + OUTAGE_RETRY_SECONDS
    if now - _outage["logged"] >= OUTAGE_LOG_SECONDS:
        _outage["logged"] = now
        logger.warning("the shared cache failed, going on without it: %r", exc)


def shared_cache_outage_reset() -> None:
    """Forget a past failure (tests)."""
    _outage.update(until=0.0, logged=0.0)


def read_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """The value of `key` from `local`, else from Django's cache (kept `seconds`), else `load()`; None is never
    cached (load a sentinel for "nothing")."""
    value: Any = local.get(key)
    if value is None:
        if not shared_cache_usable():
            value = load()
        else:
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
        if not shared_cache_usable():
            value = await orm_call(load)
        else:
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
