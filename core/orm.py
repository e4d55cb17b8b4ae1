"""Django ORM work from the metered API's async code.

The metered API's requests do not fire Django's request_started / request_finished signals (api.gateway.asgi),
whose receivers close the database connections a request opened: each would cost a hop to a thread and back on
every call, for connections the hot path never opens. What ORM work the API does (cache misses, the endpoints off
the hot path) goes through `orm_call` instead, which runs it on a worker thread and hands the connections it
opened back to the pool in that thread as soon as it returns, so none is left checked out, or broken, between
calls. On a worker thread of its own, it never shares a caller's connection or transaction.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


def _closing_connections(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return function(*args, **kwargs)
    finally:
        connections.close_all()


async def orm_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)`, a synchronous function that may use the ORM, run on a worker thread (so a long
    one, such as a batch of usage events, never holds up other requests), its connections closed after."""
    return await sync_to_async(_closing_connections, thread_sensitive=False)(function, *args, **kwargs)
