"""Budgets on the hot path: how a gateway call is claimed from, and settled against, the budgets that cover it.

The claim is made by the statement that places the call's credit hold (ledger_hold_place_budgeted, in
billing/ledger/functions): for each hard budget of the organization that covers the call (the organization's own,
its workflow's, its API key's), the hold is added to the counter of the budget's current period
(BudgetSpend.held_nano) and remembered per call (BudgetSpendHold); the budget refuses, undoing the hold, when
spent + held + this hold would pass its amount. The settle (SETTLE_WITH, in the statement that settles the ledger
hold) moves the captured part to `spent` and frees the rest, and adds what the call cost to the alert-only budgets
(they refuse nothing, so they need no claim); the sweeper (SWEEP) frees the parts of calls whose ledger hold expired
unsettled.
Whoever deletes a BudgetSpendHold row applies its correction, so it happens exactly once.

Lock order, everywhere: the wallet row, then the budgets' counters by id. Every budget of an organization is spent
through its one wallet, so no two writers of its counters can wait on each other in the other order.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from billing.ledger.sql import BUDGET_SQLSTATE

# Settle a call against its budgets: drop the call's parts of the hard budgets' counters (claimed with its hold),
# moving `captured` of each to spent and freeing the rest; and add `captured` to the spent of every other budget
# that covers the call in its current period: the alert-only ones, never claimed, and any budget set (or switched
# from alert to hard) while the call was in flight. Nothing is corrected twice: a part is gone once the sweeper
# freed it (the ledger hold expired), and such a call is not settled here. Written as WITH queries that join the
# ledger settle's own statement (ledger.ahold_settle's `attached_more`): no statement of its own, run after the
# settle has locked the wallet row. Parameters: see settle_params.
SETTLE_WITH = """,
budget_parts AS (
    DELETE FROM metering_budgetspendhold WHERE request_id = %(budget_request_id)s::text
 RETURNING budget_spend_id, amount_nano
), budget_counters AS (
    UPDATE metering_budgetspend s
       SET held_nano = s.held_nano - r.amount_nano,
           spent_nano = s.spent_nano + LEAST(%(budget_captured)s::bigint, r.amount_nano),
           updated_at = now()
      FROM budget_parts r
     WHERE s.id = r.budget_spend_id
), budget_unclaimed AS (
    INSERT INTO metering_budgetspend AS s (budget_id, window_start, spent_nano, held_nano, updated_at)
    SELECT mb.id, date_trunc(mb.period, now(), 'UTC'), %(budget_captured)s::bigint, 0, now()
      FROM metering_budget mb
     WHERE %(budget_captured)s::bigint > 0
       AND budget_covers(mb.organization_id, mb.scope, mb.workflow, mb.api_key_id, %(budget_organization_id)s::bigint,
                         %(budget_workflow)s::text, %(budget_api_key_id)s::bigint)
       AND mb.id NOT IN (SELECT c.budget_id FROM metering_budgetspend c JOIN budget_parts r ON r.budget_spend_id = c.id)
     ORDER BY mb.id
        ON CONFLICT (budget_id, window_start) DO UPDATE
       SET spent_nano = s.spent_nano + EXCLUDED.spent_nano, updated_at = now()
)"""

# Free the parts of calls whose ledger hold is no longer open but that never settled here (the ledger's sweeper
# expired them): the gateway's own settle deletes the parts in the transaction that closes the hold, so a part still
# present with a closed hold is such an orphan. The counters are locked by id first (the order the hold takes).
SWEEP = """
WITH gone AS (
    DELETE FROM metering_budgetspendhold r
     USING ledger_hold h
     WHERE h.idempotency_key = 'gw:' || r.request_id AND h.status <> 'open'
 RETURNING r.budget_spend_id, r.amount_nano
), per AS (
    SELECT budget_spend_id, sum(amount_nano) AS amount FROM gone GROUP BY budget_spend_id
), locked AS (
    SELECT s.id FROM metering_budgetspend s JOIN per ON per.budget_spend_id = s.id ORDER BY s.id FOR UPDATE OF s
)
UPDATE metering_budgetspend s SET held_nano = s.held_nano - per.amount, updated_at = now()
  FROM per, locked
 WHERE s.id = per.budget_spend_id AND locked.id = s.id
"""


@dataclass
class BudgetShort(Exception):
    """A hard budget does not leave room for the call: which one, and what it has left in its period."""

    budget_id: int
    scope: str
    workflow: str
    api_key_id: int | None
    period: str
    amount_nano: int
    used_nano: int
    resets_at: datetime

    @property
    def left_nano(self) -> int:
        return max(0, self.amount_nano - self.used_nano)


# The same as a statement of its own, for a settle that has no statement to join (a withdrawn hold).
SETTLE = f"WITH {SETTLE_WITH.removeprefix(',').strip()} SELECT 1"


def covered_params(*, organization_id: int, api_key_id: int, workflow: str, request_id: str) -> dict[str, Any]:
    """What the budgeted hold statement needs to find the budgets covering a call (ledger.ahold_place's
    `budgeted`)."""
    return {
        "organization_id": organization_id,
        "api_key_id": api_key_id,
        "workflow": workflow,
        "request_id": request_id,
    }


def settle_params(*, covered: Mapping[str, Any], captured_nano: int) -> dict[str, Any]:
    """SETTLE_WITH's parameters: the call, as covered_params gave it for its hold, and what it cost."""
    return {f"budget_{name}": value for name, value in covered.items()} | {"budget_captured": captured_nano}


def is_budget_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) == BUDGET_SQLSTATE


def short_of(exc: psycopg.Error) -> BudgetShort:
    """The BudgetShort of the hold statement's MB001 error, from its detail (a JSON object)."""
    detail = json.loads(exc.diag.message_detail or "{}")
    return BudgetShort(
        budget_id=int(detail["budget_id"]),
        scope=str(detail["scope"]),
        workflow=str(detail["workflow"] or ""),
        api_key_id=detail["api_key_id"],
        period=str(detail["period"]),
        amount_nano=int(detail["amount_nano"]),
        used_nano=int(detail["used_nano"]),
        resets_at=datetime.fromisoformat(detail["resets_at"]),
    )


# Count a charge that has no hold (a reported usage event) against every budget that covers it (the organization's,
# its workflow's, its API key's), each in its period containing %(at)s: claimed and settled at once, straight into
# `spent`. A hard budget whose spent + held would pass its amount is not counted; its row comes back with
# `counted` false, and the caller rolls the statement back with the rest of the event (budget_charge). Runs after
# the event's debit has locked the wallet row, and takes the counters in id order: the hold's lock order.
CHARGE = """
WITH covering AS (
    SELECT mb.id, mb.scope, mb.workflow, mb.api_key_id, mb.period, mb.mode, mb.amount_nano,
           date_trunc(mb.period, %(at)s::timestamptz, 'UTC') AS window_start
      FROM metering_budget mb
     WHERE budget_covers(mb.organization_id, mb.scope, mb.workflow, mb.api_key_id, %(organization_id)s::bigint,
                         %(workflow)s::text, %(api_key_id)s::bigint)
), counted AS (
    INSERT INTO metering_budgetspend AS s (budget_id, window_start, spent_nano, held_nano, updated_at)
    SELECT c.id, c.window_start, %(amount)s::bigint, 0, now()
      FROM covering c
     WHERE c.mode = 'alert' OR %(amount)s::bigint <= c.amount_nano
     ORDER BY c.id
        ON CONFLICT (budget_id, window_start) DO UPDATE
       SET spent_nano = s.spent_nano + EXCLUDED.spent_nano, updated_at = now()
     WHERE EXISTS (
               SELECT 1 FROM metering_budget b
                WHERE b.id = s.budget_id
                  AND (b.mode = 'alert' OR s.spent_nano + s.held_nano + EXCLUDED.spent_nano <= b.amount_nano))
 RETURNING s.budget_id
)
SELECT c.id, c.scope, c.workflow, c.api_key_id, c.period, c.amount_nano, c.window_start,
       c.id IN (SELECT budget_id FROM counted) AS counted
  FROM covering c
 ORDER BY c.id
"""


def charge_params(
    *, organization_id: int, api_key_id: int, workflow: str, amount_nano: int, at: datetime
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "api_key_id": api_key_id,
        "workflow": workflow,
        "amount": amount_nano,
        "at": at,
    }
