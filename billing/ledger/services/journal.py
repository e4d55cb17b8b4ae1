"""Booking journal transactions, and the checks every money service shares."""

from datetime import datetime

from django.utils import timezone

from billing.ledger.models import Account, JournalEntry, JournalTransaction
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, format_amount

MAX_KEY_LENGTH = 200


def amount_clean(value: object, *, param: str = "amount", allow_zero: bool = False) -> int:
    """An amount of nano-units given to a service: an int, positive (or zero if allowed), not absurdly large."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApplicationError(f"{param} must be a whole number of nano-units", param=param)
    if value < 0 or (value == 0 and not allow_zero):
        raise ApplicationError(f"{param} must be greater than zero", param=param)
    if value > MAX_AMOUNT_NANO:
        raise ApplicationError(f"{param} must be at most {format_amount(MAX_AMOUNT_NANO)}", param=param)
    return value


def key_clean(value: object, *, param: str = "idempotency_key") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApplicationError(f"{param} must be a non-empty string", param=param)
    if len(value) > MAX_KEY_LENGTH:
        raise ApplicationError(f"{param} must be at most {MAX_KEY_LENGTH} characters", param=param)
    return value


def expiry_clean(value: object, *, now: datetime | None = None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise ApplicationError("expires_at must be a date and time with a time zone", param="expires_at")
    if value <= (now or timezone.now()):
        raise ApplicationError("expires_at must be in the future", param="expires_at")
    return value


def transaction_book(
    *,
    wallet_id: int,
    kind: str,
    idempotency_key: str,
    actor: str,
    legs: dict[str, int],
    reason: str = "",
    category: str = "",
    hold_id: int | None = None,
) -> JournalTransaction:
    """Write one balanced journal transaction. Zero legs are left out; the rest must sum to zero."""
    entries = [(account, amount) for account, amount in legs.items() if amount]
    if sum(amount for _, amount in entries) != 0 or len(entries) < 2:
        raise ValueError(f"unbalanced journal transaction {legs}")
    if any(account not in Account.values for account, _ in entries):
        raise ValueError(f"unknown account in {legs}")
    txn = JournalTransaction.objects.create(
        wallet_id=wallet_id,
        kind=kind,
        idempotency_key=idempotency_key,
        actor=actor[:200],
        reason=reason[:500],
        category=category,
        hold_id=hold_id,
    )
    JournalEntry.objects.bulk_create(
        [JournalEntry(transaction=txn, account=account, amount_nano=amount) for account, amount in entries]
    )
    return txn
