"""The async PostgreSQL pool of the hot path (the gateway's holds and settles), built from Django's settings.

Django's ORM reaches async views only through a thread per query (`sync_to_async`), which caps a small box at a
few hundred requests a second; the ledger's hot statements run on this pool instead, in autocommit mode, one
round trip each. One pool per event loop (a uvicorn worker has one loop; tests make several).
"""

import asyncio
import contextlib
import contextvars
from typing import Any

from django.conf import settings
from django.db import connections
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

# One opening (then open) pool per event loop.
_pools: dict[asyncio.AbstractEventLoop, "asyncio.Task[AsyncConnectionPool]"] = {}


def conninfo(alias: str = "default") -> str:
    """The connection string of a Django database (its live settings, so a test database is followed)."""
    db = connections[alias].settings_dict
    params: dict[str, Any] = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": str(db["PORT"]) if db.get("PORT") else None,
        "application_name": "token-billing-gateway",
    }
    return make_conninfo(**{key: value for key, value in params.items() if value is not None})


async def _open() -> AsyncConnectionPool:
    created = AsyncConnectionPool(
        conninfo(),
        min_size=1,
        max_size=settings.GATEWAY_DB_POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
        name="gateway",
    )
    await created.open()
    return created


async def pool() -> AsyncConnectionPool:
    """This event loop's pool, opened once however many requests arrive at once (they all wait for the one opening),
    and in an empty context: the pool's own tasks must not keep the context of the request that happened to open it
    (and what it holds, such as that request's Django database connection) alive for the life of the process. A pool
    that failed to open, or was closed, is opened again."""
    loop = asyncio.get_running_loop()
    opening = _pools.get(loop)
    if opening is None or (opening.done() and (opening.cancelled() or opening.exception() or opening.result().closed)):
        opening = loop.create_task(_open(), context=contextvars.Context())
        _pools[loop] = opening
    return await asyncio.shield(opening)


async def pool_close() -> None:
    """Close this event loop's pool (at shutdown, or at the end of a test)."""
    opening = _pools.pop(asyncio.get_running_loop(), None)
    if opening is not None and not opening.cancelled():
        with contextlib.suppress(Exception):
            await (await opening).close()
