"""Every write to the ledger. Other areas import from here: `from billing.ledger import services`."""

from billing.ledger.services.charges import wallet_debit
from billing.ledger.services.grants import (
    GrantResult,
    ReversalResult,
    grant_create,
    grant_expire,
    grant_reverse,
    grants_expire,
)
from billing.ledger.services.hold_results import HoldPlaced, HoldSettled
from billing.ledger.services.holds import hold_capture, hold_place, hold_release, holds_expire
from billing.ledger.services.holds_async import ahold_place, ahold_settle
from billing.ledger.services.wallets import wallet_get_or_create, wallet_overdraft_set

__all__ = [
    "GrantResult",
    "HoldPlaced",
    "HoldSettled",
    "ReversalResult",
    "ahold_place",
    "ahold_settle",
    "grant_create",
    "grant_expire",
    "grant_reverse",
    "grants_expire",
    "hold_capture",
    "hold_place",
    "hold_release",
    "holds_expire",
    "wallet_debit",
    "wallet_get_or_create",
    "wallet_overdraft_set",
]
