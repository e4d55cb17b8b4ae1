"""What runs after the gateway (or a reported usage event) has taken credit from an organization's wallet.

`after_debit` is the one place for such hooks: it is called after settled requests or events that charged credit,
after their transaction committed, with the wallet's available credit after the charge (for a burst of debits of
one organization, once, with the latest figure). It runs off the request's path (a worker thread), so it may use
the ORM; it must stay cheap. A request refused for lack of credit runs it too: a wallet that already sits below
its auto top-up threshold sees no more debits, only refusals.
"""

import asyncio
import logging

from django.db import close_old_connections

from billing.metering.budgets import services as budget_services
from billing.payments import services as payments
from core.background import background

logger = logging.getLogger(__name__)

# Hooks run in batches: debits noted within this many seconds share one trip to a worker thread, each
# organization once, with its latest balance (a thread hop per request would cost the hot path more than the rest
# of its Python work).
BATCH_SECONDS = 0.05

# Per event loop, per organization: (the latest available credit, whether any debit of the batch was budgeted).
_pending: dict[asyncio.AbstractEventLoop, dict[int, tuple[int, bool]]] = {}


def after_debit(*, organization_id: int, available_nano: int, budgeted: bool = False) -> None:
    """Hooks that follow a debit of `organization_id`'s credit, leaving `available_nano` available; `budgeted`:
    some of the debits counted against budgets (whose thresholds are then checked; an organization without
    budgets costs no query for them)."""
    payments.auto_topup_check(organization_id=organization_id, available_nano=available_nano)
    if budgeted:
        budget_services.budget_thresholds_crossed(organization_id=organization_id)


def _run(batch: dict[int, tuple[int, bool]]) -> None:
    try:
        for organization_id, (available_nano, budgeted) in batch.items():
            try:
                after_debit(organization_id=organization_id, available_nano=available_nano, budgeted=budgeted)
            except Exception:
                logger.exception("after-debit hooks failed for organization %s", organization_id)
    finally:
        close_old_connections()


async def _flush(loop: asyncio.AbstractEventLoop) -> None:
    await asyncio.sleep(BATCH_SECONDS)
    batch = _pending.pop(loop, {})
    if batch:
        await loop.run_in_executor(None, _run, batch)


def after_debit_soon(*, organization_id: int, available_nano: int, budgeted: bool = False) -> None:
    """Note a debit; `after_debit` runs for it within BATCH_SECONDS on a worker thread, off the request's path."""
    loop = asyncio.get_running_loop()
    batch = _pending.get(loop)
    if batch is None:
        batch = _pending[loop] = {}
        background(_flush(loop))
    _, earlier = batch.get(organization_id, (0, False))
    batch[organization_id] = (available_nano, budgeted or earlier)
