"""Holds: reserve credit before a request, settle it after (DESIGN decision 3).

`hold_place` moves the most a request can cost from available to held, or refuses with InsufficientCredit;
`hold_capture` charges the actual cost (at most the hold) and returns the rest; `hold_release` returns all of
it; `holds_expire` (a Celery beat task) releases holds nobody settled by their deadline.

Every step is idempotent: a hold is named by its caller's idempotency key (a replay returns the same hold),
and each hold settles once (a replayed settle returns the first result; a different one is HoldNotOpen).

On PostgreSQL each step is one statement of billing.ledger.sql (the synchronous functions here send it through
Django's connection, the `a`-prefixed ones through a psycopg async connection, for the gateway). On SQLite the
same steps run through the ORM.
"""

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from api.errors import ApplicationError
from billing.ledger import sql
from billing.ledger.errors import HoldNotOpen, IdempotencyConflict, InsufficientCredit, NotFound
from billing.ledger.models import Account, Hold, HoldStatus, JournalTransaction, TransactionKind, Wallet
from billing.ledger.services import journal
from billing.ledger.services.allocation import draws_allocate
from billing.ledger.services.journal import amount_clean, key_clean, transaction_book
from billing.money import format_amount

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 24 * 3600
_SETTLE_KIND = {
    HoldStatus.CAPTURED: TransactionKind.CAPTURE,
    HoldStatus.RELEASED: TransactionKind.RELEASE,
    HoldStatus.EXPIRED: TransactionKind.EXPIRY,
}


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    hold_id: int
    wallet_id: int
    amount_nano: int
    expires_at: datetime
    # The wallet after the hold (or now, for a replay).
    available_nano: int
    held_nano: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class HoldSettled:
    hold_id: int
    status: str
    amount_nano: int
    captured_nano: int
    transaction_id: int
    available_nano: int
    held_nano: int
    replayed: bool = False

    @property
    def released_nano(self) -> int:
        return self.amount_nano - self.captured_nano


@dataclass(frozen=True, slots=True)
class _HoldState:
    """A hold as it stands, with its wallet's balances (what a replay reports)."""

    hold_id: int
    wallet_id: int
    amount_nano: int
    captured_nano: int
    status: str
    expires_at: datetime
    settle_transaction_id: int | None
    available_nano: int
    held_nano: int


def _ttl_clean(ttl_seconds: object) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ApplicationError(f"ttl_seconds must be a whole number from 1 to {MAX_TTL_SECONDS}", param="ttl_seconds")
    return ttl_seconds


def _place_params(
    *, wallet_id: int, amount_nano: int, idempotency_key: str, actor: str, ttl_seconds: int, reason: str
) -> dict[str, Any]:
    return {
        "wallet_id": wallet_id,
        "amount": amount_clean(amount_nano),
        "key": key_clean(idempotency_key),
        "actor": actor[:200],
        "ttl_seconds": _ttl_clean(ttl_seconds),
        "reason": reason[:500],
    }


def _placed(row: Sequence[Any], params: Mapping[str, Any]) -> HoldPlaced:
    hold_id, expires_at, available, held, replayed, wallet_id, amount = row
    if replayed and (wallet_id, amount) != (params["wallet_id"], params["amount"]):
        raise _key_conflict(amount)
    return HoldPlaced(hold_id, wallet_id, amount, expires_at, available, held, replayed=replayed)


def _key_conflict(amount_nano: int) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"this idempotency key already holds {format_amount(amount_nano)} on another request; use a new key",
        param="idempotency_key",
    )


def _place_replay(state: _HoldState | None, params: Mapping[str, Any]) -> HoldPlaced:
    if state is None:
        raise RuntimeError("a hold was refused as a duplicate but none has its key")
    if (state.wallet_id, state.amount_nano) != (params["wallet_id"], params["amount"]):
        raise _key_conflict(state.amount_nano)
    return HoldPlaced(
        state.hold_id,
        state.wallet_id,
        state.amount_nano,
        state.expires_at,
        state.available_nano,
        state.held_nano,
        replayed=True,
    )


def _insufficient(spendable: Sequence[Any] | None, amount_nano: int) -> InsufficientCredit:
    """Why a hold was refused: the wallet is short (or does not exist: NotFound is raised)."""
    if spendable is None:
        raise NotFound("wallet not found", param="wallet_id")
    return InsufficientCredit(spendable_nano=spendable[0], requested_nano=amount_nano, currency=spendable[1])


def _refusal(exc: BaseException, amount_nano: int) -> InsufficientCredit:
    """The InsufficientCredit of ledger_hold_place's LD002 error, from its detail ("<spendable> <currency>")."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    detail = getattr(getattr(cause, "diag", None), "message_detail", None) or ""
    spendable, _, currency = detail.partition(" ")
    return _insufficient((int(spendable), currency) if spendable.lstrip("-").isdigit() else None, amount_nano)


def _in_transaction(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether `conn` is inside the caller's transaction (or pipeline): after an error, nothing more can be read
    on it until the caller rolls back."""
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _settle_params(*, hold_id: int, status: str, captured_nano: int, actor: str, reason: str) -> dict[str, Any]:
    if status not in _SETTLE_KIND:
        raise ValueError(f"a hold settles as captured, released or expired, not {status!r}")
    return {
        "hold_id": hold_id,
        "status": status,
        "captured": amount_clean(captured_nano, param="captured", allow_zero=True),
        "actor": actor[:200],
        "reason": reason[:500],
    }


def _settled(row: Sequence[Any], params: Mapping[str, Any]) -> HoldSettled:
    transaction_id, _wallet_id, amount, available, held = row
    return HoldSettled(params["hold_id"], params["status"], amount, params["captured"], transaction_id, available, held)


def _settle_replay(state: _HoldState | None, params: Mapping[str, Any]) -> HoldSettled:
    """The answer to a settle that found the hold not open: the first settle's result, or why not."""
    if state is None:
        raise NotFound("hold not found", param="hold_id")
    if state.status == HoldStatus.OPEN:
        raise ApplicationError(
            f"cannot capture {format_amount(params['captured'])}: the hold is only {format_amount(state.amount_nano)}",
            param="captured",
            code="capture_exceeds_hold",
        )
    same = state.status == params["status"] and state.captured_nano == params["captured"]
    # Releasing a hold the sweeper already expired is the same outcome: nothing was charged.
    returned = params["status"] == HoldStatus.RELEASED and state.status == HoldStatus.EXPIRED
    if not (same or returned):
        raise HoldNotOpen(
            f"hold {state.hold_id} was already {state.status}"
            + (f" for {format_amount(state.captured_nano)}" if state.status == HoldStatus.CAPTURED else ""),
            param="hold_id",
        )
    assert state.settle_transaction_id is not None
    return HoldSettled(
        state.hold_id,
        state.status,
        state.amount_nano,
        state.captured_nano,
        state.settle_transaction_id,
        state.available_nano,
        state.held_nano,
        replayed=True,
    )


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether psycopg's own or wrapped by Django."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    return getattr(cause, "sqlstate", None)


# --- synchronous (Django connection) ----------------------------------------------------------------------------


def _hold_state(**lookup: Any) -> _HoldState | None:
    hold = Hold.objects.select_related("wallet").filter(**lookup).first()
    if hold is None:
        return None
    settle = JournalTransaction.objects.filter(idempotency_key=f"hold:{hold.pk}:settle").values_list("id", flat=True)
    return _HoldState(
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
    params = _place_params(
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
        return _place_replay(_hold_state(idempotency_key=params["key"]), params)
    except DatabaseError as exc:
        if _sqlstate(exc) != sql.INSUFFICIENT_SQLSTATE:
            raise
        raise _refusal(exc, params["amount"]) from None
    return _placed(row, params)


@transaction.atomic
def _place_orm(params: Mapping[str, Any]) -> HoldPlaced:
    if Hold.objects.filter(idempotency_key=params["key"]).exists():
        return _place_replay(_hold_state(idempotency_key=params["key"]), params)
    amount, wallet_id = params["amount"], params["wallet_id"]
    charged = Wallet.objects.filter(pk=wallet_id, available_nano__gte=amount - F("overdraft_limit_nano")).update(
        available_nano=F("available_nano") - amount, held_nano=F("held_nano") + amount
    )
    if not charged:
        raise _insufficient(_spendable(wallet_id), amount)
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
        if _sqlstate(exc) != sql.NOT_OPEN_SQLSTATE:
            raise
        return _settle_replay(_hold_state(pk=params["hold_id"]), params)
    return _settled(row, params)


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
                kind=_SETTLE_KIND[HoldStatus(params["status"])],
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
            return _settled((txn.pk, wallet.pk, amount, wallet.available_nano, wallet.held_nano), params)
    return _settle_replay(_hold_state(pk=params["hold_id"]), params)


def hold_capture(*, hold_id: int, amount_nano: int, actor: str, reason: str = "") -> HoldSettled:
    """Charge `amount_nano` (at most the hold) and return the rest of the hold to available credit."""
    return _settle(
        _settle_params(
            hold_id=hold_id, status=HoldStatus.CAPTURED, captured_nano=amount_nano, actor=actor, reason=reason
        )
    )


def hold_release(*, hold_id: int, actor: str, reason: str = "") -> HoldSettled:
    """Return the whole hold to available credit (the request failed or was never sent)."""
    return _settle(
        _settle_params(hold_id=hold_id, status=HoldStatus.RELEASED, captured_nano=0, actor=actor, reason=reason)
    )


def holds_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweeper: release every open hold past its deadline (a crashed worker, a lost connection)."""
    now = now or timezone.now()
    due = Hold.objects.filter(status=HoldStatus.OPEN, expires_at__lte=now).order_by("expires_at", "id")
    expired = 0
    for hold_id in due.values_list("id", flat=True)[:limit]:
        params = _settle_params(
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


# --- asynchronous (psycopg connection in autocommit mode; the gateway's path, PostgreSQL only) ------------------


async def _ahold_state(conn: psycopg.AsyncConnection[Any], statement: str, value: object) -> _HoldState | None:
    cursor = await conn.execute(statement, {"value": value})
    row = await cursor.fetchone()
    return None if row is None else _HoldState(*row)


async def ahold_place(
    conn: psycopg.AsyncConnection[Any],
    *,
    wallet_id: int,
    amount_nano: int,
    idempotency_key: str,
    actor: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    reason: str = "",
) -> HoldPlaced:
    """hold_place in one statement on an async connection."""
    params = _place_params(
        wallet_id=wallet_id,
        amount_nano=amount_nano,
        idempotency_key=idempotency_key,
        actor=actor,
        ttl_seconds=ttl_seconds,
        reason=reason,
    )
    try:
        cursor = await conn.execute(sql.HOLD_PLACE, params)
        row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:  # a concurrent first use of the same key won
        if _in_transaction(conn):
            raise IdempotencyConflict(
                "another request is placing a hold with this idempotency key right now; retry", param="idempotency_key"
            ) from None
        return _place_replay(await _ahold_state(conn, sql.HOLD_STATE_BY_KEY, params["key"]), params)
    except psycopg.Error as exc:
        if exc.sqlstate != sql.INSUFFICIENT_SQLSTATE:
            raise
        raise _refusal(exc, params["amount"]) from None
    assert row is not None
    return _placed(row, params)


async def ahold_settle(
    conn: psycopg.AsyncConnection[Any],
    *,
    hold_id: int,
    status: str,
    captured_nano: int,
    actor: str,
    reason: str = "",
    also: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> HoldSettled:
    """Capture (status "captured"), release or expire a hold: one statement, one round trip.

    `also` are statements to run in the same transaction after the settle (the gateway's usage record, the key's
    spend counter). They are sent in one pipeline with the settle and no transaction block, so they form one
    implicit transaction that ends at the pipeline's single sync: all land, or none. `conn` must be in autocommit
    mode. A settle that finds the hold not open writes nothing and returns the first settle's result (or raises
    HoldNotOpen), like the synchronous functions; inside a transaction of the caller's (the statements then join
    it), it raises HoldNotOpen and the caller rolls back.
    """
    params = _settle_params(hold_id=hold_id, status=status, captured_nano=captured_nano, actor=actor, reason=reason)
    try:
        if also:
            async with conn.pipeline():
                cursor = await conn.execute(sql.HOLD_SETTLE, params)
                for statement, statement_params in also:
                    await conn.execute(statement, statement_params)
        else:
            cursor = await conn.execute(sql.HOLD_SETTLE, params)
        row = await cursor.fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate != sql.NOT_OPEN_SQLSTATE:
            raise
        if _in_transaction(conn):
            # Inside the caller's transaction, aborted by this error: what happened to the hold cannot be read.
            raise HoldNotOpen(f"hold {hold_id} is not open (settled, expired, or unknown)", param="hold_id") from None
        return _settle_replay(await _ahold_state(conn, sql.HOLD_STATE_BY_ID, hold_id), params)
    assert row is not None
    return _settled(row, params)
