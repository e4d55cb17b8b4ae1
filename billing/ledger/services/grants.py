"""Grants: credit coming in (top-ups, promotions, refund credit, plan allowances), expiring, and going back.

None of these is on a request's hot path, so they lock the wallet row first (`select_for_update`) and re-read it
under the lock: one lock path per wallet, the same one the hot statements take.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.services.audit import actor_label
from billing.ledger.errors import IdempotencyConflict, NotFound
from billing.ledger.models import (
    FUNDING_ACCOUNT,
    Account,
    Grant,
    GrantDraw,
    GrantKind,
    JournalTransaction,
    TransactionKind,
    Wallet,
)
from billing.ledger.services.journal import amount_clean, expiry_clean, key_clean, transaction_book
from billing.ledger.services.wallets import wallet_get_or_create
from core.errors import ApplicationError
from core.money import format_amount


@dataclass(frozen=True)
class GrantResult:
    grant: Grant
    # False when the idempotency key had been used for this very grant before: nothing new was booked.
    created: bool


@dataclass(frozen=True)
class ReversalResult:
    transaction: JournalTransaction
    # False when the idempotency key had been used for this very reversal before: nothing new was booked.
    created: bool


def _locked_wallet(wallet_id: int) -> Wallet:
    return Wallet.objects.select_for_update().get(pk=wallet_id)


def _locked_grant(grant_id: int) -> tuple[Wallet, Grant]:
    """The grant's wallet, locked, and the grant read under that lock (so its remainder is current)."""
    wallet_id = Grant.objects.filter(pk=grant_id).values_list("wallet_id", flat=True).first()
    if wallet_id is None:
        raise NotFound("grant not found", param="grant_id")
    return _locked_wallet(wallet_id), Grant.objects.get(pk=grant_id)


def _grant_replay(*, key: str, wallet: Wallet, kind: str, amount_nano: int, expires_at: datetime | None) -> Grant:
    grant = Grant.objects.get(transaction__idempotency_key=key)
    if (grant.wallet_id, grant.kind, grant.amount_nano, grant.expires_at) != (wallet.pk, kind, amount_nano, expires_at):
        raise IdempotencyConflict(
            "this idempotency key was already used for a different grant "
            f"({format_amount(grant.amount_nano)} {grant.kind}); use a new key",
            param="idempotency_key",
        )
    return grant


@transaction.atomic
def grant_create(
    *,
    organization_id: int,
    kind: str,
    amount_nano: int,
    idempotency_key: str,
    actor: AbstractBaseUser | str | None,
    expires_at: datetime | None = None,
    reason: str = "",
    source_ref: str = "",
) -> GrantResult:
    """Add credit to the organization's wallet. Replaying the same key returns the first grant, unchanged.

    What the wallet owes from an overdraft (unfunded charges) is paid first out of the new grant.
    """
    if kind not in GrantKind.values:
        raise ApplicationError(f"kind must be one of {', '.join(GrantKind.values)}", param="kind")
    amount = amount_clean(amount_nano)
    expiry = expiry_clean(expires_at)
    key = f"grant:{key_clean(idempotency_key)}"
    wallet = _locked_wallet(wallet_get_or_create(organization_id=organization_id).pk)
    # Under the wallet lock, a concurrent replay of the same key has either committed (and is found) or waits.
    if JournalTransaction.objects.filter(idempotency_key=key).exists():
        return GrantResult(
            _grant_replay(key=key, wallet=wallet, kind=kind, amount_nano=amount, expires_at=expiry), False
        )
    settle = min(wallet.unfunded_nano, amount)
    try:
        with transaction.atomic():
            txn = transaction_book(
                wallet_id=wallet.pk,
                kind=TransactionKind.GRANT,
                idempotency_key=key,
                actor=actor_label(actor),
                reason=reason,
                legs={FUNDING_ACCOUNT[GrantKind(kind)]: -amount, Account.AVAILABLE: amount},
            )
    except IntegrityError:  # the same key used at the same moment for another wallet
        return GrantResult(
            _grant_replay(key=key, wallet=wallet, kind=kind, amount_nano=amount, expires_at=expiry), False
        )
    grant = Grant.objects.create(
        wallet=wallet,
        kind=kind,
        amount_nano=amount,
        remaining_nano=amount - settle,
        expires_at=expiry,
        source_ref=source_ref[:200],
        transaction=txn,
    )
    if settle:
        GrantDraw.objects.bulk_create(
            [
                GrantDraw(transaction=txn, grant=grant, amount_nano=settle),
                GrantDraw(transaction=txn, grant=None, amount_nano=-settle),
            ]
        )
    Wallet.objects.filter(pk=wallet.pk).update(
        available_nano=F("available_nano") + amount, unfunded_nano=F("unfunded_nano") - settle
    )
    return GrantResult(grant, True)


@transaction.atomic
def grant_expire(*, grant_id: int, now: datetime | None = None) -> int:
    """Book what is left of an expired grant to breakage; returns the amount expired.

    Credit the grant still backs in open holds stays until those settle (they reserved it while it was valid,
    and captures draw from it first, being the earliest to expire); a later sweep expires what they release.
    """
    now = now or timezone.now()
    wallet, grant = _locked_grant(grant_id)
    if grant.expires_at is None or grant.expires_at > now:
        return 0
    amount = min(grant.remaining_nano, max(wallet.available_nano, 0))
    if amount == 0:
        return 0
    txn = transaction_book(
        wallet_id=wallet.pk,
        kind=TransactionKind.GRANT_EXPIRY,
        # One expiry per state of the grant: a replay finds the same remaining amount and books nothing twice.
        idempotency_key=f"grant-expiry:{grant.pk}:{grant.remaining_nano}",
        actor="system",
        reason=f"{grant.get_kind_display()} credit expired on {grant.expires_at:%Y-%m-%d %H:%M} UTC",
        legs={Account.AVAILABLE: -amount, Account.BREAKAGE: amount},
    )
    GrantDraw.objects.create(transaction=txn, grant=grant, amount_nano=amount)
    Grant.objects.filter(pk=grant.pk).update(remaining_nano=F("remaining_nano") - amount)
    Wallet.objects.filter(pk=wallet.pk).update(available_nano=F("available_nano") - amount)
    return amount


def grants_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweeper: expire every grant past its expiry that has credit left. Returns the total amount expired."""
    now = now or timezone.now()
    due = Grant.objects.filter(expires_at__lte=now, remaining_nano__gt=0).order_by("expires_at", "id")
    return sum(grant_expire(grant_id=grant_id, now=now) for grant_id in due.values_list("id", flat=True)[:limit])


@transaction.atomic
def grant_reverse(
    *,
    grant_id: int,
    amount_nano: int,
    idempotency_key: str,
    actor: AbstractBaseUser | str | None,
    reason: str,
    cash_refund: bool = False,
) -> ReversalResult:
    """Take unused credit of one grant back out of the wallet. Replaying the same key returns the first
    transaction (created False), also when the replay raced the first call: the wallet lock orders them.

    `cash_refund` when the money went back to the customer (a Stripe refund of a paid top-up): booked to the
    `refunded` account. Otherwise a correction (a grant made by mistake): booked back to its funding account.
    Only credit that is available can be taken; credit held by requests in flight must settle first.
    """
    amount = amount_clean(amount_nano)
    # Cash refunds and corrections are keyed apart: a correction can never be taken for a refund's entry.
    key = f"{'refund' if cash_refund else 'reverse'}:{key_clean(idempotency_key)}"
    if not reason or not reason.strip():
        raise ApplicationError("a reason is required", param="reason")
    wallet, grant = _locked_grant(grant_id)
    done = JournalTransaction.objects.filter(idempotency_key=key).first()
    if done is not None:
        drawn = done.draws.filter(grant_id=grant.pk).values_list("amount_nano", flat=True).first()
        if drawn != amount:
            raise IdempotencyConflict(
                "this idempotency key was already used for another reversal", param="idempotency_key"
            )
        return ReversalResult(done, created=False)
    if amount > grant.remaining_nano:
        raise ApplicationError(
            f"only {format_amount(grant.remaining_nano)} of this grant is unused", param="amount", code="exceeds_unused"
        )
    if amount > wallet.available_nano:
        raise ApplicationError(
            f"only {format_amount(max(wallet.available_nano, 0))} is available; the rest is held by requests in "
            "flight, try again when they finish",
            param="amount",
            code="credit_held",
        )
    txn = transaction_book(
        wallet_id=wallet.pk,
        kind=TransactionKind.REFUND if cash_refund else TransactionKind.ADJUSTMENT,
        idempotency_key=key,
        actor=actor_label(actor),
        reason=reason,
        legs={
            Account.AVAILABLE: -amount,
            (Account.REFUNDED if cash_refund else FUNDING_ACCOUNT[GrantKind(grant.kind)]): amount,
        },
    )
    GrantDraw.objects.create(transaction=txn, grant=grant, amount_nano=amount)
    Grant.objects.filter(pk=grant.pk).update(remaining_nano=F("remaining_nano") - amount)
    Wallet.objects.filter(pk=wallet.pk).update(available_nano=F("available_nano") - amount)
    return ReversalResult(txn, created=True)
