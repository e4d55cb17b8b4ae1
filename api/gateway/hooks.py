"""What runs after the gateway (or a reported usage event) has taken credit from an organization's wallet.

`after_debit` is the one place for such hooks: it is called once per settled request or event that charged
credit, after its transaction committed, with the wallet's available credit after the charge. It runs off the
request's path (a worker thread), so it may use the ORM; it must stay cheap and never raise.

The product's auto top-up belongs here:
    billing.payments.services.auto_topup_check(organization_id=organization_id, available_nano=available_nano)
"""

import asyncio
import logging

logger = logging.getLogger(__name__)

_pending: set[asyncio.Future[None]] = set()


def after_debit(*, organization_id: int, available_nano: int) -> None:
    """Hooks that follow a debit of `organization_id`'s credit, leaving `available_nano` available."""
    return None


def _run(organization_id: int, available_nano: int) -> None:
    try:
        after_debit(organization_id=organization_id, available_nano=available_nano)
    except Exception:
        logger.exception("after-debit hooks failed for organization %s", organization_id)
    finally:
        from django.db import close_old_connections

        close_old_connections()


def after_debit_soon(*, organization_id: int, available_nano: int) -> None:
    """Schedule `after_debit` on a worker thread without making the request wait for it."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, _run, organization_id, available_nano)
    _pending.add(future)
    future.add_done_callback(_pending.discard)
