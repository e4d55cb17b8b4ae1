"""Per-key spend limits (ApiKey.spend_limit_nano per day, week or month), exact under concurrency.

A key with a limit has a counter per period (billing.metering.models.KeySpend): `spent` (settled charges) and `held`
(the holds of its requests in flight). Admitting a request raises `held` by the request's hold with ONE conditional
statement, in the same database transaction as the ledger hold, and only if spent + held + hold stays within the
limit; so concurrent requests on the same key can never overshoot it, whatever their number. Each admitted request
leaves a KeySpendHold row; its settle deletes that row and moves the captured part to `spent` (the rest is freed),
in the transaction that settles the ledger hold. If a request never settles (a crashed worker), the ledger's sweeper
expires its hold and `key_spend_sweep` here frees its part: whoever deletes the row applies the correction, so it
happens exactly once.

Lock order is the wallet row (the ledger statement) before the key's counter, on admission and on settle alike,
so the two paths cannot deadlock.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.db import DatabaseError, connection, transaction

from accounts.selectors import apikey_spend_window
from billing.metering.callers import AuthenticatedKey

LIMIT_SQLSTATE = "GW001"

# Raise the key's `held` by the request's hold if the limit allows, and remember the request's part; otherwise
# fail the statement with SQLSTATE GW001 (gateway_require), which rolls back the transaction and its ledger hold.
RESERVE = """
WITH s AS (
    INSERT INTO api_keyspend AS s (api_key_id, window_start, spent_nano, held_nano, updated_at)
    SELECT %(api_key_id)s::bigint, %(window_start)s::timestamptz, 0, %(amount)s::bigint, now()
     WHERE %(amount)s::bigint <= %(limit)s::bigint
        ON CONFLICT (api_key_id, window_start) DO UPDATE
       SET held_nano = s.held_nano + EXCLUDED.held_nano, updated_at = now()
     WHERE s.spent_nano + s.held_nano + EXCLUDED.held_nano <= %(limit)s::bigint
 RETURNING s.id
), r AS (
    INSERT INTO api_keyspendhold (key_spend_id, request_id, amount_nano, created_at)
    SELECT s.id, %(request_id)s::text, %(amount)s::bigint, now() FROM s
)
SELECT gateway_require((SELECT count(*) FROM s) = 1, 'key_spend_limit')
"""

# Settle a request's part: drop its row and move `captured` of it to spent (the rest is freed). Nothing happens
# if the row is gone (the request had no part, or the sweeper freed it after its ledger hold expired).
SETTLE = """
WITH r AS (
    DELETE FROM api_keyspendhold WHERE request_id = %(request_id)s::text RETURNING key_spend_id, amount_nano
)
UPDATE api_keyspend s
   SET held_nano = s.held_nano - r.amount_nano,
       spent_nano = s.spent_nano + LEAST(%(captured)s::bigint, r.amount_nano),
       updated_at = now()
  FROM r
 WHERE s.id = r.key_spend_id
"""

USED = """
SELECT spent_nano + held_nano FROM api_keyspend WHERE api_key_id = %(api_key_id)s::bigint
   AND window_start = %(window_start)s::timestamptz
"""

# Free the parts of requests whose ledger hold is no longer open but that never settled here (the ledger's
# sweeper expired them). The gateway's own settle deletes the part in the transaction that closes the hold, so a
# part still present with a closed hold can only be such an orphan.
SWEEP = """
WITH gone AS (
    DELETE FROM api_keyspendhold r
     USING ledger_hold h
     WHERE h.idempotency_key = 'gw:' || r.request_id AND h.status <> 'open'
 RETURNING r.key_spend_id, r.amount_nano
), per AS (
    SELECT key_spend_id, sum(amount_nano) AS amount FROM gone GROUP BY key_spend_id
)
UPDATE api_keyspend s SET held_nano = s.held_nano - per.amount, updated_at = now()
  FROM per
 WHERE s.id = per.key_spend_id
"""


class KeyLimitShort(Exception):
    """The key's spend limit for its period does not leave room for this request."""

    def __init__(self, *, limit_nano: int, used_nano: int, period: str):
        super().__init__("key spend limit")
        self.limit_nano = limit_nano
        self.used_nano = used_nano
        self.period = period

    @property
    def left_nano(self) -> int:
        return max(0, self.limit_nano - self.used_nano)


@dataclass(frozen=True, slots=True)
class SpendClaim:
    """What a request with a limited key claims from its key's counter."""

    api_key_id: int
    window_start: datetime
    limit_nano: int
    period: str
    amount_nano: int
    request_id: str

    def params(self) -> dict[str, Any]:
        return {
            "api_key_id": self.api_key_id,
            "window_start": self.window_start,
            "limit": self.limit_nano,
            "amount": self.amount_nano,
            "request_id": self.request_id,
        }


def claim_for(*, key: AuthenticatedKey, amount_nano: int, request_id: str, at: datetime) -> SpendClaim | None:
    """The claim a request of `amount_nano` makes, or None when the key has no spend limit."""
    if key.spend_limit_nano is None or key.spend_limit_period is None or amount_nano <= 0:
        return None
    start, _end = apikey_spend_window(period=key.spend_limit_period, at=at)
    return SpendClaim(key.id, start, key.spend_limit_nano, key.spend_limit_period, amount_nano, request_id)


def is_limit_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) == LIMIT_SQLSTATE


async def ashort(conn: psycopg.AsyncConnection[Any], claim: SpendClaim) -> KeyLimitShort:
    """Why `claim` was refused: how much of the limit is used (read after the refusal rolled back)."""
    cursor = await conn.execute(USED, claim.params())
    row = await cursor.fetchone()
    return KeyLimitShort(limit_nano=claim.limit_nano, used_nano=row[0] if row else 0, period=claim.period)


def settle_params(*, request_id: str, captured_nano: int) -> dict[str, Any]:
    return {"request_id": request_id, "captured": captured_nano}


# --- the same statements on Django's connection (reported usage events, the sweeper) ---------------------------


def spend_charge(*, claim: SpendClaim) -> None:
    """Count a charge that needs no hold (a reported usage event) against the key's limit, all at once: RESERVE
    then SETTLE, inside the caller's transaction; KeyLimitShort (nothing written) if the limit does not allow it."""
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():  # a savepoint: the refusal rolls back to it, and the caller's work stands
                cursor.execute(RESERVE, claim.params())
        except DatabaseError as exc:
            if not is_limit_error(exc.__cause__ or exc):
                raise
            cursor.execute(USED, claim.params())
            row = cursor.fetchone()
            raise KeyLimitShort(
                limit_nano=claim.limit_nano, used_nano=row[0] if row else 0, period=claim.period
            ) from None
        cursor.execute(SETTLE, settle_params(request_id=claim.request_id, captured_nano=claim.amount_nano))


@transaction.atomic
def key_spend_sweep() -> int:
    """Free the parts of requests that never settled because their ledger hold expired."""
    with connection.cursor() as cursor:
        cursor.execute(SWEEP)
        return cursor.rowcount
