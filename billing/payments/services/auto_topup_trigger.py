"""Auto top-up's trigger: `auto_topup_check` runs after every debit (the gateway's settle, services), so it must
be cheap. It reads two numbers from a two-layer cache (process memory for LOCAL_CACHE_SECONDS, then Django's cache
for CACHE_SECONDS) and returns at once when the balance is above the threshold; below it, it enqueues the charge
task after commit, debounced per organization. The charge itself is in auto_topup.py.
"""

from dataclasses import dataclass

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction

from billing.ledger import selectors as ledger_selectors
from billing.payments.models import AutoTopUp, TopUp
from core.caching import aread_through, read_through
from core.orm import orm_call

CACHE_SECONDS = 300
LOCAL_CACHE_SECONDS = 5
# After a charge is enqueued, further checks of the organization enqueue nothing for this long (the charge clears
# it when it ends, so a wallet that drains again right after a top-up is noticed at once).
QUEUE_DEBOUNCE_SECONDS = 15
_local = LocMemCache("payments-auto-topup", {"TIMEOUT": LOCAL_CACHE_SECONDS, "OPTIONS": {"MAX_ENTRIES": 10_000}})


@dataclass(frozen=True, slots=True)
class Trigger:
    enabled: bool
    threshold_nano: int


_OFF = Trigger(False, 0)


def _trigger_key(organization_id: int) -> str:
    return f"payments:auto-topup:trigger:{organization_id}"


def _queued_key(organization_id: int) -> str:
    return f"payments:auto-topup:queued:{organization_id}"


def _trigger_load(organization_id: int) -> Trigger:
    row = AutoTopUp.objects.filter(organization_id=organization_id).values_list("enabled", "threshold_nano").first()
    return Trigger(*row) if row else _OFF


def auto_topup_cache_clear(*, organization_id: int | None = None) -> None:
    """Forget cached triggers: one organization's (after a change; other processes follow within seconds), or all."""
    if organization_id is None:
        _local.clear()
        return
    _local.delete(_trigger_key(organization_id))
    cache.delete_many([_trigger_key(organization_id), _queued_key(organization_id)])


def _trigger(organization_id: int) -> Trigger:
    return read_through(_local, _trigger_key(organization_id), lambda: _trigger_load(organization_id), CACHE_SECONDS)


def _enqueue(organization_id: int) -> None:
    from billing.payments.tasks import auto_topup_charge_task

    if cache.add(_queued_key(organization_id), 1, timeout=QUEUE_DEBOUNCE_SECONDS):
        auto_topup_charge_task.delay(organization_id)


def auto_topup_check(*, organization_id: int, available_nano: int) -> None:
    """Called after a debit with the wallet's new available credit: start an automatic charge when it is below the
    organization's threshold. Returns at once otherwise; the charge is enqueued after the caller's commit."""
    trigger = _trigger(organization_id)
    if not trigger.enabled or available_nano >= trigger.threshold_nano:
        return
    transaction.on_commit(lambda: _enqueue(organization_id))


async def aauto_topup_check(*, organization_id: int, available_nano: int) -> None:
    """`auto_topup_check` for async callers (the gateway), to be awaited after their settle committed."""
    trigger = await aread_through(
        _local, _trigger_key(organization_id), lambda: _trigger_load(organization_id), CACHE_SECONDS
    )
    if not trigger.enabled or available_nano >= trigger.threshold_nano:
        return
    if await cache.aadd(_queued_key(organization_id), 1, timeout=QUEUE_DEBOUNCE_SECONDS):
        from billing.payments.tasks import auto_topup_charge_task

        # Publishing to the broker is blocking I/O: keep it off the event loop. Through orm_call, not a bare
        # thread, so that a task run eagerly (tests, CELERY_TASK_ALWAYS_EAGER) closes the connections it opens.
        await orm_call(auto_topup_charge_task.delay, organization_id)


def trigger_changed(organization_id: int, *, check_now: bool) -> None:
    """After commit: forget cached triggers and, when enabled, look at the balance at once (a wallet that already
    sits below the threshold sees no more debits: its requests are refused for lack of credit)."""

    def run() -> None:
        auto_topup_cache_clear(organization_id=organization_id)
        if check_now:
            balance = ledger_selectors.wallet_balance(organization_id=organization_id)
            auto_topup_check(organization_id=organization_id, available_nano=balance.available_nano)

    transaction.on_commit(run)


def auto_topup_settled(*, top_up: TopUp) -> None:
    """An automatic charge ended (paid or failed): the next check may enqueue again straight away."""
    if top_up.kind == TopUp.Kind.AUTO:
        organization_id = top_up.organization_id
        transaction.on_commit(lambda: cache.delete(_queued_key(organization_id)))
