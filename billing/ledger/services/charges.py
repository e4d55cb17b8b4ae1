"""Direct charges: credit spent without a hold (plan fees, commitments paid upfront, reported usage events)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.services.audit import actor_label
from billing.ledger.errors import IdempotencyConflict, InsufficientCredit
from billing.ledger.models import Account, JournalTransaction, TransactionKind, Wallet
from billing.ledger.services.allocation import draws_allocate
from billing.ledger.services.journal import amount_clean, key_clean, transaction_book
from billing.ledger.services.wallets import wallet_get_or_create


def _debit_replay(*, key: str, wallet_id: int, amount_nano: int) -> JournalTransaction:
    done = JournalTransaction.objects.get(idempotency_key=key)
    spent = done.entries.filter(account=Account.SPENT).values_list("amount_nano", flat=True).first()
    if (done.wallet_id, spent) != (wallet_id, amount_nano):
        raise IdempotencyConflict("this idempotency key was already used for another debit", param="idempotency_key")
    return done


@transaction.atomic
def wallet_debit(
    *,
    organization_id: int,
    amount_nano: int,
    idempotency_key: str,
    actor: AbstractBaseUser | str | None,
    reason: str = "",
    category: str = "",
) -> JournalTransaction:
    """Spend credit now, if available credit (plus the overdraft) covers it; otherwise InsufficientCredit.

    The wallet is charged with one conditional UPDATE, like a hold; replaying the key returns the first debit.
    """
    amount = amount_clean(amount_nano)
    key = f"debit:{key_clean(idempotency_key)}"
    wallet = wallet_get_or_create(organization_id=organization_id)
    if JournalTransaction.objects.filter(idempotency_key=key).exists():
        return _debit_replay(key=key, wallet_id=wallet.pk, amount_nano=amount)
    try:
        with transaction.atomic():
            txn = transaction_book(
                wallet_id=wallet.pk,
                kind=TransactionKind.DEBIT,
                idempotency_key=key,
                actor=actor_label(actor),
                reason=reason,
                category=category,
                legs={Account.AVAILABLE: -amount, Account.SPENT: amount},
            )
    except IntegrityError:  # the same key, at the same moment: the first one stands
        return _debit_replay(key=key, wallet_id=wallet.pk, amount_nano=amount)
    charged = Wallet.objects.filter(pk=wallet.pk, available_nano__gte=amount - F("overdraft_limit_nano")).update(
        available_nano=F("available_nano") - amount
    )
    if not charged:
        # Raising rolls back the transaction booked above.
        wallet.refresh_from_db(fields=["available_nano", "overdraft_limit_nano"])
        raise InsufficientCredit(
            spendable_nano=wallet.available_nano + wallet.overdraft_limit_nano,
            requested_nano=amount,
            currency=wallet.currency,
        )
    draws_allocate(wallet_id=wallet.pk, transaction_id=txn.pk, amount_nano=amount)
    return txn
