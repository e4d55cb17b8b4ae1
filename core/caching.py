"""Read-through caching for what the hot path reads on every call (an API key, an auto top-up trigger): this
process's memory first, then Django's cache (Redis, shared by all processes), then the database.

The shared cache only saves database reads: when it fails (Redis is down, unreachable, or does not answer within
its client's socket timeout), a read falls through to the database and the value is kept in process memory
alone, so requests keep working. After a failure the process leaves the shared cache alone for
a few seconds (core.outage), so an outage costs one wait per process now and then, not one per read.
"""

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.base import BaseCache

from core.orm import orm_call
from core.outage import REDIS_ERRORS, Outage

T = TypeVar("T")

logger = logging.getLogger(__name__)

# The shared cache (Django's, Redis in production) after a failure: see core.outage.
shared_cache_outage = Outage("the shared cache", means="reads go to the database", retry_seconds=5.0, logger=logger)


def read_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """The value of `key` from `local`, else from Django's cache (kept `seconds`), else `load()`; None is never
    cached (load a sentinel for "nothing")."""
    value: Any = local.get(key)
    if value is None:
        if not shared_cache_outage.usable():
            value = load()
        else:
            try:
                value = cache.get(key)
            except REDIS_ERRORS as exc:
                shared_cache_outage.failed(exc)
                value = load()
            else:
                if value is None:
                    value = load()
                    try:
                        cache.set(key, value, seconds)
                    except REDIS_ERRORS as exc:
                        shared_cache_outage.failed(exc)
        local.set(key, value)
    return value  # type: ignore[no-any-return]


async def aread_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """read_through for async code: `load`, synchronous ORM work, runs through orm_call."""
    value: Any = local.get(key)
    if value is None:
        if not shared_cache_outage.usable():
            value = await orm_call(load)
        else:
            try:
                value = await cache.aget(key)
            except REDIS_ERRORS as exc:
                shared_cache_outage.failed(exc)
                value = await orm_call(load)
            else:
                if value is None:
                    value = await orm_call(load)
                    try:
                        await cache.aset(key, value, seconds)
                    except REDIS_ERRORS as exc:
                        shared_cache_outage.failed(exc)
        local.set(key, value)
    return value  # type: ignore[no-any-return]
