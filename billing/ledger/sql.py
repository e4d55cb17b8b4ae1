"""The ledger's hot statements, for PostgreSQL.

Placing and settling holds is what every metered request does, so each step is one statement (a
data-modifying CTE) and the wallet row, which every request on a wallet must lock, is held only while the
server executes that statement and commits; no Python runs while it is locked. The same SQL serves the
synchronous services (through Django's connection) and the async gateway (through a psycopg pool).

SQLite, used only by the quickstart, runs the same operations through the ORM in `services.holds` (it
serialises writers anyway); the property test checks that both paths agree on PostgreSQL.

Parameters are psycopg's named style, with explicit casts so the plans stay stable whatever the values.
"""

# Debit the wallet's available credit into held, if it (plus the overdraft) covers the amount, and record the
# hold with its balanced journal transaction. No row comes back when the wallet cannot cover the amount (or
# does not exist). A replayed idempotency key fails on ledger_hold's unique index and rolls the whole
# statement back; the caller then returns the hold that key made.
HOLD_PLACE = """
WITH w AS (
    UPDATE ledger_wallet
       SET available_nano = available_nano - %(amount)s::bigint,
           held_nano = held_nano + %(amount)s::bigint
     WHERE id = %(wallet_id)s::bigint
       AND available_nano - %(amount)s::bigint >= -overdraft_limit_nano
 RETURNING id, available_nano, held_nano
), h AS (
    INSERT INTO ledger_hold (wallet_id, amount_nano, captured_nano, status, idempotency_key, actor, expires_at)
    SELECT w.id, %(amount)s::bigint, 0, 'open', %(key)s::text, %(actor)s::text,
           now() + make_interval(secs => %(ttl_seconds)s::double precision)
      FROM w
 RETURNING id, expires_at
), t AS (
    INSERT INTO ledger_journaltransaction (wallet_id, kind, idempotency_key, actor, reason, category, hold_id)
    SELECT w.id, 'hold', 'hold:' || h.id || ':place', %(actor)s::text, %(reason)s::text, '', h.id
      FROM w, h
 RETURNING id
), e AS (
    INSERT INTO ledger_journalentry (transaction_id, account, amount_nano)
    SELECT t.id, leg.account, leg.amount
      FROM t, (VALUES ('available', -%(amount)s::bigint), ('held', %(amount)s::bigint)) AS leg(account, amount)
)
SELECT h.id, h.expires_at, w.available_nano, w.held_nano FROM w, h
"""

# Settle an open hold: capture `captured` of it (status 'captured') or none (status 'released' / 'expired'),
# returning the rest to available. Book the journal transaction and move the wallet's caches. When the hold is
# not open any more (settled before, or expired by the sweeper) the statement raises SQLSTATE LD001
# (ledger_require), which rolls back anything else the transaction wrote; the caller then reads what happened.
HOLD_SETTLE = """
WITH h AS (
    UPDATE ledger_hold
       SET status = %(status)s::text, captured_nano = %(captured)s::bigint, settled_at = now()
     WHERE id = %(hold_id)s::bigint AND status = 'open' AND amount_nano >= %(captured)s::bigint
 RETURNING id, wallet_id, amount_nano
), t AS (
    INSERT INTO ledger_journaltransaction (wallet_id, kind, idempotency_key, actor, reason, category, hold_id)
    SELECT h.wallet_id, %(kind)s::text, 'hold:' || h.id || ':settle', %(actor)s::text, %(reason)s::text, '', h.id
      FROM h
 RETURNING id
), e AS (
    INSERT INTO ledger_journalentry (transaction_id, account, amount_nano)
    SELECT t.id, leg.account, leg.amount
      FROM t, h, LATERAL (VALUES
          ('held', -h.amount_nano),
          ('spent', %(captured)s::bigint),
          ('available', h.amount_nano - %(captured)s::bigint)
      ) AS leg(account, amount)
     WHERE leg.amount <> 0
), w AS (
    UPDATE ledger_wallet
       SET held_nano = held_nano - h.amount_nano,
           available_nano = available_nano + h.amount_nano - %(captured)s::bigint
      FROM h
     WHERE ledger_wallet.id = h.wallet_id
 RETURNING ledger_wallet.id, available_nano, held_nano
)
SELECT t.id, w.id, h.amount_nano, w.available_nano, w.held_nano
  FROM (SELECT ledger_require((SELECT count(*) FROM h) = 1, 'hold_not_open')) AS open_hold, t, w, h
"""
NOT_OPEN_SQLSTATE = "LD001"

# Consumption order (DESIGN decision 4): plan allowance first (use-or-lose), then the earliest expiry, then
# promotional before refund credit before paid, then the oldest. services.allocation.CONSUMPTION_ORDER is the
# same order for the ORM.
GRANT_ORDER = """
    (kind = 'plan_allowance') DESC,
    expires_at ASC NULLS LAST,
    CASE kind WHEN 'promotional' THEN 0 WHEN 'refund' THEN 1 ELSE 2 END,
    id
"""

# Record which grants pay for `amount` charged by journal transaction `transaction_id`, in consumption order,
# and book what no grant covers as an unfunded draw (overdraft). Runs in the transaction that charged the
# wallet, after the wallet row was locked by that charge: being a new statement, it sees every grant change
# committed by earlier lock holders. Does nothing if the transaction already has its draws (a replay).
_ALLOCATE = """
WITH todo AS (
    SELECT {amount} AS amount
     WHERE {amount} > 0
       AND NOT EXISTS (SELECT 1 FROM ledger_grantdraw WHERE transaction_id = {transaction_id})
), live AS (
    SELECT id, remaining_nano,
           sum(remaining_nano) OVER (ORDER BY {order}) - remaining_nano AS before
      FROM ledger_grant
     WHERE wallet_id = {wallet_id} AND remaining_nano > 0
), take AS (
    SELECT live.id, LEAST(live.remaining_nano, todo.amount - live.before) AS amount
      FROM live, todo
     WHERE live.before < todo.amount
), g AS (
    UPDATE ledger_grant SET remaining_nano = ledger_grant.remaining_nano - take.amount
      FROM take
     WHERE ledger_grant.id = take.id
), unfunded AS (
    SELECT todo.amount - coalesce((SELECT sum(amount) FROM take), 0) AS amount FROM todo
), w AS (
    UPDATE ledger_wallet SET unfunded_nano = unfunded_nano + unfunded.amount
      FROM unfunded
     WHERE ledger_wallet.id = {wallet_id} AND unfunded.amount > 0
)
INSERT INTO ledger_grantdraw (transaction_id, grant_id, amount_nano)
SELECT {transaction_id}, id, amount FROM take
UNION ALL
SELECT {transaction_id}, NULL, amount FROM unfunded WHERE amount > 0
"""

ALLOCATE = _ALLOCATE.format(
    amount="%(amount)s::bigint",
    transaction_id="%(transaction_id)s::bigint",
    wallet_id="%(wallet_id)s::bigint",
    order=GRANT_ORDER,
)

# ALLOCATE for a hold settled by HOLD_SETTLE earlier in the same transaction and sent in the same pipeline, so
# it cannot use HOLD_SETTLE's result: it finds the settle transaction and wallet through the hold. (Had the
# hold not been open, HOLD_SETTLE would have raised and this would not run.)
ALLOCATE_FOR_HOLD = _ALLOCATE.format(
    amount="%(captured)s::bigint",
    transaction_id=(
        "(SELECT id FROM ledger_journaltransaction WHERE idempotency_key = 'hold:' || %(hold_id)s::bigint || ':settle')"
    ),
    wallet_id="(SELECT wallet_id FROM ledger_hold WHERE id = %(hold_id)s::bigint)",
    order=GRANT_ORDER,
)

HOLD_STATE = """
SELECT h.id, h.wallet_id, h.amount_nano, h.captured_nano, h.status, h.expires_at, t.id, w.available_nano, w.held_nano
  FROM ledger_hold h
  JOIN ledger_wallet w ON w.id = h.wallet_id
  LEFT JOIN ledger_journaltransaction t ON t.idempotency_key = 'hold:' || h.id || ':settle'
 WHERE h.{column} = %(value)s
"""
HOLD_STATE_BY_ID = HOLD_STATE.format(column="id")
HOLD_STATE_BY_KEY = HOLD_STATE.format(column="idempotency_key")

# Why HOLD_PLACE placed nothing: a hold with this key may exist already (a replay), else the wallet is short.
PLACE_REFUSED = """
SELECT w.available_nano + w.overdraft_limit_nano, w.currency,
       EXISTS (SELECT 1 FROM ledger_hold WHERE idempotency_key = %(key)s::text)
  FROM ledger_wallet w
 WHERE w.id = %(wallet_id)s::bigint
"""
