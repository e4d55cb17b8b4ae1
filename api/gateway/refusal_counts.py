"""Counting refused calls (402, 429) per UTC day, key, workflow and reason, off the call's own path.

A refusal only adds one to a counter in this process; the counters are written to PostgreSQL in one statement
(billing.usage.services.REFUSALS_UPSERT) at most every FLUSH_SECONDS, by a background task. A flood of refusals
(a client retrying a 429 in a loop) therefore costs the database one small statement a second per process, and
the refused call waits for nothing. The price: counts of the last second are lost if the process dies, which a
counter meant to explain failures can afford.
"""

import asyncio
import logging
from collections import Counter
from datetime import date

from django.utils import timezone

from api.gateway.calls import Call
from api.gateway.http import GatewayError
from billing.usage.services import REFUSALS_UPSERT
from core import pg
from core.background import background

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
COUNTED_STATUSES = (402, 429)
# (organization_id, day, api_key_id, workflow, status, reason)
Group = tuple[int, date, int | None, str, int, str]
_pending: Counter[Group] = Counter()
_flush: "asyncio.Task[None] | None" = None


def refusal_count(call: Call, refusal: GatewayError) -> None:
    """Count `refusal` of `call` if it is one for money or rate; the write happens later, in the background."""
    global _flush
    if refusal.status not in COUNTED_STATUSES:
        return
    group = (
        call.key.organization_id,
        timezone.now().date(),
        call.key.id,
        call.workflow,
        refusal.status,
        (refusal.code or "refused")[:50],
    )
    _pending[group] += 1
    # (A flush of another event loop, one that stopped, would never run: this loop starts its own.)
    if _flush is None or _flush.done() or _flush.get_loop() is not asyncio.get_running_loop():
        _flush = background(_flush_later())


async def _flush_later() -> None:
    await asyncio.sleep(FLUSH_SECONDS)
    await refusals_flush()


async def refusals_flush() -> None:
    """Write the counts gathered so far (tests call it to see them at once)."""
    if not _pending:
        return
    batch = dict(_pending)
    _pending.clear()
    groups = list(batch)
    params = {
        "organization_ids": [g[0] for g in groups],
        "days": [g[1] for g in groups],
        "api_key_ids": [g[2] for g in groups],
        "workflows": [g[3] for g in groups],
        "statuses": [g[4] for g in groups],
        "reasons": [g[5] for g in groups],
        "counts": list(batch.values()),
    }
    try:
        pool = await pg.pool()
        async with pool.connection() as conn:
            await conn.execute(REFUSALS_UPSERT, params)
    except Exception:
        # Counting must never fail a call; a lost batch is logged.
        logger.exception("could not record %d refusal count(s)", sum(batch.values()))
