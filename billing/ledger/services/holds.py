"""Holds: reserve credit before a request, settle it after (DESIGN decision 3).

`hold_place` moves the most a request can cost from available to held, or refuses with InsufficientCredit;
`hold_capture` charges the actual cost (at most the hold) and returns the rest; `hold_release` returns all of
it; `holds_expire` (a Celery beat task) releases holds nobody settled by their deadline.

Every step is idempotent: a hold is named by its caller's idempotency key (a replay returns the same hold),
and each hold settles once (a replayed settle returns the first result; a different one is HoldNotOpen).

On PostgreSQL each step is one statement of billing.ledger.sql, sent here through Django's connection (and by
holds_async through a psycopg async connection, for the gateway). On SQLite the same steps run through the ORM.
"""

import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from billing.ledger import sql
from billing.ledger.errors import HoldNotOpen
from billing.ledger.models import Account, Hold, HoldStatus, JournalTransaction, TransactionKind, Wallet
from billing.ledger.services import journal
from billing.ledger.services.allocation import draws_allocate
from billing.ledger.services.hold_results import (
    DEFAULT_TTL_SECONDS,
    SETTLE_KIND,
    HoldPlaced,
    HoldSettled,
    HoldState,
    insufficient,
    place_params,
    place_replay,
    placed,
    refusal,
    settle_params,
    settle_replay,
    settled,
    sqlstate,
)
from billing.ledger.services.journal import transaction_book

# --- synchronous (Django connection) ----------------------------------------------------------------------------


def _hold_state(**lookup: Any) -> HoldState | None:
    hold = Hold.objects.select_related("wallet").filter(**lookup).first()
    if hold is None:
        return None
    settle = JournalTransaction.objects.filter(idempotency_key=f"hold:{hold.pk}:settle").values_list("id", flat=True)
    return HoldState(
        hold.pk,
        hold.wallet_id,
        hold.amount_nano,
        hold.captured_nano,
        hold.status,
        hold.expires_at,
        settle.first(),
        hold.wallet.available_nano,
        hold.wallet.held_nano,
    )


def _spendable(wallet_id: int) -> tuple[int, str] | None:
    wallet = Wallet.objects.filter(pk=wallet_id)
    row = wallet.values_list("available_nano", "overdraft_limit_nano", "currency").first()
    return None if row is None else (row[0] + row[1], row[2])


def hold_place(
    *,
    wallet_id: int,
    amount_nano: int,
    idempotency_key: str,
    actor: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    reason: str = "",
) -> HoldPlaced:
    """Reserve `amount_nano` of the wallet's credit until settled or `ttl_seconds` pass; InsufficientCredit if
    available credit plus the overdraft does not cover it."""
    params = place_params(
        wallet_id=wallet_id,
        amount_nano=amount_nano,
        idempotency_key=idempotency_key,
        actor=actor,
        ttl_seconds=ttl_seconds,
        reason=reason,
    )
    if not journal.sql_fast_path():
        return _place_orm(params)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.HOLD_PLACE, params)
            row = cursor.fetchone()
    except IntegrityError:  # a concurrent first use of the same key won
        return place_replay(_hold_state(idempotency_key=params["key"]), params)
    except DatabaseError as exc:
        if sqlstate(exc) != sql.INSUFFICIENT_SQLSTATE:
            raise
        raise refusal(exc, params["amount"]) from None
    return placed(row, params)


@transaction.atomic
def _place_orm(params: Mapping[str, Any]) -> HoldPlaced:
    if Hold.objects.filter(idempotency_key=params["key"]).exists():
        return place_replay(_hold_state(idempotency_key=params["key"]), params)
    amount, wallet_id = params["amount"], params["wallet_id"]
    charged = Wallet.objects.filter(pk=wallet_id, available_nano__gte=amount - F("overdraft_limit_nano")).update(
        available_nano=F("available_nano") - amount, held_nano=F("held_nano") + amount
    )
    if not charged:
        raise insufficient(_spendable(wallet_id), amount)
    hold = Hold.objects.create(
        wallet_id=wallet_id,
        amount_nano=amount,
        idempotency_key=params["key"],
        actor=params["actor"],
        expires_at=timezone.now() + timedelta(seconds=params["ttl_seconds"]),
    )
    transaction_book(
        wallet_id=wallet_id,
        kind=TransactionKind.HOLD,
        idempotency_key=f"hold:{hold.pk}:place",
        actor=params["actor"],
        reason=params["reason"],
        legs={Account.AVAILABLE: -amount, Account.HELD: amount},
        hold_id=hold.pk,
    )
    wallet = Wallet.objects.get(pk=wallet_id)
    return HoldPlaced(hold.pk, wallet_id, amount, hold.expires_at, wallet.available_nano, wallet.held_nano)


def _settle(params: dict[str, Any]) -> HoldSettled:
    if not journal.sql_fast_path():
        return _settle_orm(params)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.HOLD_SETTLE, params)
            row = cursor.fetchone()
    except DatabaseError as exc:
        if sqlstate(exc) != sql.NOT_OPEN_SQLSTATE:
            raise
        return settle_replay(_hold_state(pk=params["hold_id"]), params)
    return settled(row, params)


def _settle_orm(params: dict[str, Any]) -> HoldSettled:
    with transaction.atomic():
        hold = Hold.objects.select_for_update().filter(pk=params["hold_id"]).first()
        if hold is not None and hold.status == HoldStatus.OPEN and params["captured"] <= hold.amount_nano:
            amount, captured = hold.amount_nano, params["captured"]
            Hold.objects.filter(pk=hold.pk).update(
                status=params["status"], captured_nano=captured, settled_at=timezone.now()
            )
            txn = transaction_book(
                wallet_id=hold.wallet_id,
                kind=SETTLE_KIND[HoldStatus(params["status"])],
                idempotency_key=f"hold:{hold.pk}:settle",
                actor=params["actor"],
                reason=params["reason"],
                legs={Account.HELD: -amount, Account.SPENT: captured, Account.AVAILABLE: amount - captured},
                hold_id=hold.pk,
            )
            Wallet.objects.filter(pk=hold.wallet_id).update(
                held_nano=F("held_nano") - amount, available_nano=F("available_nano") + amount - captured
            )
            draws_allocate(wallet_id=hold.wallet_id, transaction_id=txn.pk, amount_nano=captured)
            wallet = Wallet.objects.get(pk=hold.wallet_id)
            return settled((txn.pk, wallet.pk, amount, wallet.available_nano, wallet.held_nano), params)
    return settle_replay(_hold_state(pk=params["hold_id"]), params)


def hold_capture(*, hold_id: int, amount_nano: int, actor: str, reason: str = "") -> HoldSettled:
    """Charge `amount_nano` (at most the hold) and return the rest of the hold to available credit."""
    return _settle(
        settle_params(
            hold_id=hold_id, status=HoldStatus.CAPTURED, captured_nano=amount_nano, actor=actor, reason=reason
        )
    )


def hold_release(*, hold_id: int, actor: str, reason: str = "") -> HoldSettled:
    """Return the whole hold to available credit (the request failed or was never sent)."""
    return _settle(
        settle_params(hold_id=hold_id, status=HoldStatus.RELEASED, captured_nano=0, actor=actor, reason=reason)
    )


def holds_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweeper: release every open hold past its deadline (a crashed worker, a lost connection)."""
    now = now or timezone.now()
    due = Hold.objects.filter(status=HoldStatus.OPEN, expires_at__lte=now).order_by("expires_at", "id")
    expired = 0
    for hold_id in due.values_list("id", flat=True)[:limit]:
        params = settle_params(
            hold_id=hold_id,
            status=HoldStatus.EXPIRED,
            captured_nano=0,
            actor="system",
            reason="the hold passed its deadline without being settled",
        )
        with contextlib.suppress(HoldNotOpen):  # settled by its request in the meantime
            _settle(params)
            expired += 1
    return expired
