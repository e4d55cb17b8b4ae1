"""The async PostgreSQL pool of the hot path (the gateway's holds and settles), built from Django's settings.

Django's ORM reaches async views only through a thread per query (`sync_to_async`), which caps a small box at a
few hundred requests a second; the ledger's hot statements run on this pool instead, in autocommit mode, one
round trip each. One pool per event loop (a uvicorn worker has one loop; tests make several).
"""

import asyncio
from typing import Any

from django.conf import settings
from django.db import connections
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}


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


async def pool() -> AsyncConnectionPool:
    """This event loop's pool, opened on first use."""
    loop = asyncio.get_running_loop()
    existing = _pools.get(loop)
    if existing is not None:
        return existing
    created = AsyncConnectionPool(
        conninfo(),
        min_size=1,
        max_size=settings.GATEWAY_DB_POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
        name="gateway",
    )
    _pools[loop] = created
    await created.open()
    return created


async def pool_close() -> None:
    """Close this event loop's pool (at shutdown, or at the end of a test)."""
    closing = _pools.pop(asyncio.get_running_loop(), None)
    if closing is not None:
        await closing.close()
