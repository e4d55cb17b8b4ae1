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

# An organization's budget thresholds are checked at most once per this many seconds per process (a check is a
# query; a busy organization settles hundreds of calls a second): a budgeted debit inside that window is checked
# at its end, so the last debit of a burst is never left unchecked.
BUDGET_CHECK_SECONDS = 1.0
_budget_next: dict[tuple[asyncio.AbstractEventLoop, int], float] = {}
_budget_trailing: set[tuple[asyncio.AbstractEventLoop, int]] = set()


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


def _budgets_check(organization_id: int) -> None:
    try:
        budget_services.budget_thresholds_crossed(organization_id=organization_id)
    except Exception:
        logger.exception("budget thresholds could not be checked for organization %s", organization_id)
    finally:
        close_old_connections()


async def _budgets_check_later(loop: asyncio.AbstractEventLoop, organization_id: int, delay: float) -> None:
    await asyncio.sleep(delay)
    _budget_trailing.discard((loop, organization_id))
    _budget_next[(loop, organization_id)] = loop.time() + BUDGET_CHECK_SECONDS
    await loop.run_in_executor(None, _budgets_check, organization_id)


def _budgets_check_now(loop: asyncio.AbstractEventLoop, organization_id: int) -> bool:
    """Whether this batch checks the organization's budget thresholds (else one check is due at the window's end)."""
    slot = (loop, organization_id)
    now = loop.time()
    next_at = _budget_next.get(slot, 0.0)
    if now >= next_at and slot not in _budget_trailing:
        _budget_next[slot] = now + BUDGET_CHECK_SECONDS
        return True
    if slot not in _budget_trailing:
        _budget_trailing.add(slot)
        background(_budgets_check_later(loop, organization_id, next_at - now))
    return False


def after_debit_soon(*, organization_id: int, available_nano: int, budgeted: bool = False) -> None:
    """Note a debit; `after_debit` runs for it within BATCH_SECONDS on a worker thread, off the request's path.
    `budgeted`: the debit counted against budgets (their thresholds are checked, at most once a second)."""
    loop = asyncio.get_running_loop()
    batch = _pending.get(loop)
    if batch is None:
        batch = _pending[loop] = {}
        background(_flush(loop))
    _, earlier = batch.get(organization_id, (0, False))
    check = budgeted and not earlier and _budgets_check_now(loop, organization_id)
    batch[organization_id] = (available_nano, earlier or check)
