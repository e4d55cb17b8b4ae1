"""What the hold steps take and give, shared by the synchronous and the async drivers of the same statements:
parameters, results, and the answers to replays and refusals. No I/O here."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from billing.ledger.errors import HoldNotOpen, IdempotencyConflict, InsufficientCredit, NotFound
from billing.ledger.models import HoldStatus
from billing.ledger.services.journal import amount_clean, key_clean
from core.errors import ApplicationError
from core.money import format_amount

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 24 * 3600
SETTLE_STATUSES = (HoldStatus.CAPTURED, HoldStatus.RELEASED, HoldStatus.EXPIRED)


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
    # How many budgets the hold was claimed from (HOLD_PLACE_BUDGETED), so that the settle corrects them.
    budgets: int = 0


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
class HoldState:
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


def ttl_clean(ttl_seconds: object) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ApplicationError(f"ttl_seconds must be a whole number from 1 to {MAX_TTL_SECONDS}", param="ttl_seconds")
    return ttl_seconds


def place_params(
    *, wallet_id: int, amount_nano: int, idempotency_key: str, actor: str, ttl_seconds: int, reason: str
) -> dict[str, Any]:
    return {
        "wallet_id": wallet_id,
        "amount": amount_clean(amount_nano),
        "key": key_clean(idempotency_key),
        "actor": actor[:200],
        "ttl_seconds": ttl_clean(ttl_seconds),
        "reason": reason[:500],
    }


def placed(row: Sequence[Any], params: Mapping[str, Any]) -> HoldPlaced:
    hold_id, expires_at, available, held, replayed, wallet_id, amount, *budgets = row
    if replayed and (wallet_id, amount) != (params["wallet_id"], params["amount"]):
        raise key_conflict(amount)
    return HoldPlaced(
        hold_id, wallet_id, amount, expires_at, available, held, replayed=replayed, budgets=budgets[0] if budgets else 0
    )


def key_conflict(amount_nano: int) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"this idempotency key already holds {format_amount(amount_nano)} on another request; use a new key",
        param="idempotency_key",
    )


def place_replay(state: HoldState | None, params: Mapping[str, Any]) -> HoldPlaced:
    if state is None:
        raise RuntimeError("a hold was refused as a duplicate but none has its key")
    if (state.wallet_id, state.amount_nano) != (params["wallet_id"], params["amount"]):
        raise key_conflict(state.amount_nano)
    return HoldPlaced(
        state.hold_id,
        state.wallet_id,
        state.amount_nano,
        state.expires_at,
        state.available_nano,
        state.held_nano,
        replayed=True,
    )


def insufficient(spendable: Sequence[Any] | None, amount_nano: int) -> InsufficientCredit:
    """Why a hold was refused: the wallet is short (or does not exist: NotFound is raised)."""
    if spendable is None:
        raise NotFound("wallet not found", param="wallet_id")
    return InsufficientCredit(spendable_nano=spendable[0], requested_nano=amount_nano, currency=spendable[1])


def refusal(exc: BaseException, amount_nano: int) -> InsufficientCredit:
    """The InsufficientCredit of ledger_hold_place's LD002 error, from its detail ("<spendable> <currency>")."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    detail = getattr(getattr(cause, "diag", None), "message_detail", None) or ""
    spendable, _, currency = detail.partition(" ")
    return insufficient((int(spendable), currency) if spendable.lstrip("-").isdigit() else None, amount_nano)


def in_transaction(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether `conn` is inside the caller's transaction (or pipeline): after an error, nothing more can be read
    on it until the caller rolls back."""
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def settle_params(*, hold_id: int, status: str, captured_nano: int, actor: str, reason: str) -> dict[str, Any]:
    if status not in SETTLE_STATUSES:
        raise ValueError(f"a hold settles as captured, released or expired, not {status!r}")
    return {
        "hold_id": hold_id,
        "status": status,
        "captured": amount_clean(captured_nano, param="captured", allow_zero=True),
        "actor": actor[:200],
        "reason": reason[:500],
    }


def settled(row: Sequence[Any], params: Mapping[str, Any]) -> HoldSettled:
    transaction_id, _wallet_id, amount, available, held = row
    return HoldSettled(params["hold_id"], params["status"], amount, params["captured"], transaction_id, available, held)


def settle_replay(state: HoldState | None, params: Mapping[str, Any]) -> HoldSettled:
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


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether psycopg's own or wrapped by Django."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    return getattr(cause, "sqlstate", None)
