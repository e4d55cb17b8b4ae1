"""The ledger's hot statements on PostgreSQL: one round trip each, and the functions they call.

Placing and settling holds is what every metered request does. Each step is one call of a PL/pgSQL function whose
source is a file in `functions/` (installed by the migrations, see `functions_install`): the rows are written
first and the wallet row, which every request on a wallet must lock, is locked last and held only for its UPDATE,
the grant allocation and the commit; no Python runs while it is locked. The same statements serve the synchronous
services (Django's connection) and the async gateway (a psycopg pool). PostgreSQL is the only database: there is
no second implementation of any of these steps.
"""

import hashlib
from pathlib import Path
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"
# In dependency order: ledger_settle calls ledger_allocate, ledger_hold_place_budgeted calls ledger_hold_place and
# budget_covers (which the budgets' own statements call too, billing.metering.budgets).
FUNCTION_FILES = (
    "ledger_append_only.sql",
    "ledger_entries_balanced.sql",
    "ledger_allocate.sql",
    "ledger_hold_place.sql",
    "ledger_settle.sql",
    "budget_covers.sql",
    "ledger_hold_place_budgeted.sql",
)


def function_source(name: str) -> str:
    return (FUNCTIONS_DIR / name).read_text()


def functions_digest() -> str:
    """The sha256 of every function file, in install order: a migration that installs them records it."""
    digest = hashlib.sha256()
    for name in FUNCTION_FILES:
        digest.update(function_source(name).encode())
    return digest.hexdigest()


def functions_install(schema_editor: Any) -> None:
    """CREATE OR REPLACE every ledger function from its file (a migration's RunPython step).

    A migration that has run does not run again: a change to a file ships with a new migration that calls this and
    records the new `functions_digest()` as its FUNCTIONS_DIGEST (tests/billing/ledger/test_functions.py fails
    until it does).
    """
    for name in FUNCTION_FILES:
        schema_editor.execute(function_source(name), params=None)


# A hold, or its first result when the key was used before (`replayed`). Raises LD002 when the wallet cannot
# cover it, with "<spendable nano> <currency>" (or "no such wallet") as the error's detail; a concurrent first use
# of the same key raises unique_violation (the caller then reads the hold).
HOLD_PLACE = """
SELECT hold_id, expires_at, available_nano, held_nano, replayed, hold_wallet_id, hold_amount_nano
  FROM ledger_hold_place(%(wallet_id)s::bigint, %(amount)s::bigint, %(key)s::text, %(actor)s::text,
                         %(ttl_seconds)s::double precision, %(reason)s::text)
"""
INSUFFICIENT_SQLSTATE = "LD002"

# HOLD_PLACE, and the hold claimed from the budgets that cover the call (billing.metering.budgets), with the number
# of budgets claimed as an eighth column. Raises MB001 when a hard budget refuses (its detail: a JSON object).
HOLD_PLACE_BUDGETED = """
SELECT hold_id, expires_at, available_nano, held_nano, replayed, hold_wallet_id, hold_amount_nano, budgets
  FROM ledger_hold_place_budgeted(%(wallet_id)s::bigint, %(amount)s::bigint, %(key)s::text, %(actor)s::text,
                                  %(ttl_seconds)s::double precision, %(reason)s::text, %(organization_id)s::bigint,
                                  %(api_key_id)s::bigint, %(workflow)s::text, %(request_id)s::text)
"""
BUDGET_SQLSTATE = "MB001"

# Capture `captured` of an open hold (status 'captured') or none of it (status 'released' / 'expired').
# Raises LD001 when the hold is not open any more; the caller then reads what happened.
HOLD_SETTLE = """
SELECT transaction_id, wallet_id, amount_nano, available_nano, held_nano
  FROM ledger_settle(%(hold_id)s::bigint, %(status)s::text, %(captured)s::bigint, %(actor)s::text, %(reason)s::text)
"""
NOT_OPEN_SQLSTATE = "LD001"

# Record which grants pay for a charge; the caller has locked the wallet row in this transaction.
ALLOCATE = """
SELECT ledger_allocate(%(wallet_id)s::bigint, %(transaction_id)s::bigint, %(amount)s::bigint)
"""

HOLD_STATE = """
SELECT h.id, h.wallet_id, h.amount_nano, h.captured_nano, h.status, h.expires_at, t.id, w.available_nano, w.held_nano
  FROM ledger_hold h
  JOIN ledger_wallet w ON w.id = h.wallet_id
  LEFT JOIN ledger_journaltransaction t ON t.idempotency_key = 'hold:' || h.id || ':settle'
 WHERE h.{column} = %(value)s
"""
HOLD_STATE_BY_ID = HOLD_STATE.format(column="id")
HOLD_STATE_BY_KEY = HOLD_STATE.format(column="idempotency_key")
