"""Holds: reserve credit before a request, settle it after (DESIGN decision 3).

`hold_place` moves the most a request can cost from available to held, or refuses with InsufficientCredit;
`hold_capture` charges the actual cost (at most the hold) and returns the rest; `hold_release` returns all of
it; `holds_expire` (a Celery beat task) releases holds nobody settled by their deadline.

Every step is idempotent: a hold is named by its caller's idempotency key (a replay returns the same hold),
and each hold settles once (a replayed settle returns the first result; a different one is HoldNotOpen).

Each step is one statement of billing.ledger.sql (a call of its PL/pgSQL function), sent here through Django's
connection, and by holds_async through a psycopg async connection for the gateway: one implementation of each step.
"""

import contextlib
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from billing.ledger import sql
from billing.ledger.errors import HoldNotOpen
from billing.ledger.models import Hold, HoldStatus
from billing.ledger.services.hold_results import (
    DEFAULT_TTL_SECONDS,
    HoldPlaced,
    HoldSettled,
    HoldState,
    place_params,
    place_replay,
    placed,
    refusal,
    settle_params,
    settle_replay,
    settled,
    sqlstate,
)


def _hold_state(statement: str, value: int | str) -> HoldState | None:
    with connection.cursor() as cursor:
        cursor.execute(statement, {"value": value})
        row = cursor.fetchone()
    return None if row is None else HoldState(*row)


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
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.HOLD_PLACE, params)
            row = cursor.fetchone()
    except IntegrityError:  # a concurrent first use of the same key won
        return place_replay(_hold_state(sql.HOLD_STATE_BY_KEY, params["key"]), params)
    except DatabaseError as exc:
        if sqlstate(exc) != sql.INSUFFICIENT_SQLSTATE:
            raise
        raise refusal(exc, params["amount"]) from None
    return placed(row, params)


def _settle(params: dict[str, Any]) -> HoldSettled:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.HOLD_SETTLE, params)
            row = cursor.fetchone()
    except DatabaseError as exc:
        if sqlstate(exc) != sql.NOT_OPEN_SQLSTATE:
            raise
        return settle_replay(_hold_state(sql.HOLD_STATE_BY_ID, params["hold_id"]), params)
    return settled(row, params)


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
