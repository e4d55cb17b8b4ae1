"""Read-through caching for what the hot path reads on every call (an API key, an auto top-up trigger): this
process's memory first, then Django's cache (Redis, shared by all processes), then the database."""

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.base import BaseCache

from core.orm import orm_call

T = TypeVar("T")


def read_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """The value of `key` from `local`, else from Django's cache (kept `seconds`), else `load()`; None is never
    cached (load a sentinel for "nothing")."""
    value: Any = local.get(key)
    if value is None:
        value = cache.get(key)
        if value is None:
            value = load()
            cache.set(key, value, seconds)
        local.set(key, value)
    return value  # type: ignore[no-any-return]


async def aread_through(local: BaseCache, key: str, load: Callable[[], T], seconds: int) -> T:
    """read_through for async code: `load`, synchronous ORM work, runs through orm_call."""
    value: Any = local.get(key)
    if value is None:
        value = await cache.aget(key)
        if value is None:
            value = await orm_call(load)
            await cache.aset(key, value, seconds)
        local.set(key, value)
    return value  # type: ignore[no-any-return]
