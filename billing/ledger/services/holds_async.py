"""The hold steps on a psycopg async connection in autocommit mode: the metered API's path (PostgreSQL only).

The same statements and the same answers as billing.ledger.services.holds, one round trip per step.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from billing.ledger import sql
from billing.ledger.errors import HoldNotOpen, IdempotencyConflict
from billing.ledger.services.hold_results import (
    DEFAULT_TTL_SECONDS,
    HoldPlaced,
    HoldSettled,
    HoldState,
    in_transaction,
    place_params,
    place_replay,
    placed,
    refusal,
    settle_params,
    settle_replay,
    settled,
)


async def _ahold_state(conn: psycopg.AsyncConnection[Any], statement: str, value: object) -> HoldState | None:
    cursor = await conn.execute(statement, {"value": value})
    row = await cursor.fetchone()
    return None if row is None else HoldState(*row)


async def ahold_place(
    conn: psycopg.AsyncConnection[Any],
    *,
    wallet_id: int,
    amount_nano: int,
    idempotency_key: str,
    actor: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    reason: str = "",
    budgeted: Mapping[str, Any] | None = None,
) -> HoldPlaced:
    """hold_place in one statement on an async connection.

    With `budgeted` (organization_id, api_key_id, workflow, request_id of a gateway call), the same statement claims
    the hold from the budgets that cover the call (HoldPlaced.budgets says how many); a hard budget that refuses
    raises psycopg's error with SQLSTATE MB001 (sql.BUDGET_SQLSTATE), the hold undone.
    """
    params = place_params(
        wallet_id=wallet_id,
        amount_nano=amount_nano,
        idempotency_key=idempotency_key,
        actor=actor,
        ttl_seconds=ttl_seconds,
        reason=reason,
    )
    statement = sql.HOLD_PLACE
    if budgeted is not None:
        statement, params = sql.HOLD_PLACE_BUDGETED, params | dict(budgeted)
    try:
        cursor = await conn.execute(statement, params)
        row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:  # a concurrent first use of the same key won
        if in_transaction(conn):
            raise IdempotencyConflict(
                "another request is placing a hold with this idempotency key right now; retry", param="idempotency_key"
            ) from None
        return place_replay(await _ahold_state(conn, sql.HOLD_STATE_BY_KEY, params["key"]), params)
    except psycopg.Error as exc:
        if exc.sqlstate != sql.INSUFFICIENT_SQLSTATE:
            raise
        raise refusal(exc, params["amount"]) from None
    assert row is not None
    return placed(row, params)


def _with_attached(statement: str, more: str = "") -> str:
    """The settle with `statement` as a data-modifying WITH of it; `statement`'s parameters are renamed
    (attached_...) so that they cannot meet the settle's. `more`: further WITH queries (", name AS (...)")."""
    return f"WITH attached AS ({statement.replace('%(', '%(attached_')}){more} {sql.HOLD_SETTLE}"


async def ahold_settle(
    conn: psycopg.AsyncConnection[Any],
    *,
    hold_id: int,
    status: str,
    captured_nano: int,
    actor: str,
    reason: str = "",
    attached: tuple[str, Mapping[str, Any]] | None = None,
    attached_more: tuple[str, Mapping[str, Any]] | None = None,
    also: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> HoldSettled:
    """Capture (status "captured"), release or expire a hold: one statement, one round trip.

    `attached` is one more write (an INSERT, UPDATE or DELETE without a WITH of its own: the gateway's usage
    record) made by the settle's own statement, as a data-modifying WITH: PostgreSQL runs it once the settle has
    succeeded, and a settle that fails (the hold is not open) makes none of it. It costs less than a statement of
    its own. `attached_more` (only with `attached`) are further data-modifying WITH queries of the same statement
    (text starting with ", name AS (", parameters named apart from the settle's), run the same way after the
    settle (the gateway's budget counters). `also` are statements to run in the same transaction after the settle
    (the key's spend counter). They are sent in one pipeline with the settle and no transaction block, so they
    form one implicit transaction that ends at the pipeline's single sync: all land, or none. `conn` must be in
    autocommit mode. A settle that finds the hold not open writes nothing and returns the first settle's result (or
    raises HoldNotOpen), like the synchronous functions; inside a transaction of the caller's (the statements then
    join it), it raises HoldNotOpen and the caller rolls back.
    """
    params = settle_params(hold_id=hold_id, status=status, captured_nano=captured_nano, actor=actor, reason=reason)
    statement = sql.HOLD_SETTLE
    if attached is not None:
        statement = _with_attached(attached[0], attached_more[0] if attached_more else "")
        params = params | {f"attached_{name}": value for name, value in attached[1].items()}
        if attached_more is not None:
            params = params | dict(attached_more[1])
    try:
        if also:
            async with conn.pipeline():
                cursor = await conn.execute(statement, params)
                for more, more_params in also:
                    await conn.execute(more, more_params)
        else:
            cursor = await conn.execute(statement, params)
        row = await cursor.fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate != sql.NOT_OPEN_SQLSTATE:
            raise
        if in_transaction(conn):
            # Inside the caller's transaction, aborted by this error: what happened to the hold cannot be read.
            raise HoldNotOpen(f"hold {hold_id} is not open (settled, expired, or unknown)", param="hold_id") from None
        return settle_replay(await _ahold_state(conn, sql.HOLD_STATE_BY_ID, hold_id), params)
    assert row is not None
    return settled(row, params)
