"""Hold, then settle (DESIGN decision 3): the money steps of every metered request.

`hold_open` reserves the most a request can cost and claims it from the hard budgets that cover the request (a
key's spend limit is one: a hard budget of the key) in the same statement (billing.metering.budgets); `settle` rates
what was used, captures it from the hold (never more than the hold), releases the rest, writes the request's usage
record and settles the budgets' counters, all in ONE transaction, or releases everything when the upstream failed.

Each step is one round trip on the async pool (core.pg): `ahold_place`; `ahold_settle` with the usage record
`attached` to its statement and the budgets' counters joined to it. When rating needs period-to-date state (plan
quotas, commitments, tiers) it runs in that same transaction (`ausage_rate`) before the settle.

Settles run in their own task: a client that disconnects cancels its request, never the settle.
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from billing.ledger import services as ledger
from billing.ledger.errors import HoldNotOpen, InsufficientCredit
from billing.metering import budgets, hooks
from billing.metering.callers import AuthenticatedKey
from billing.pricing import rating
from billing.pricing import services as pricing
from billing.usage import services as usage_services
from billing.usage.services import UsageRow
from core import pg
from core.background import shielded

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request's hold (None when it can cost nothing), the number of budgets that cover it, and what identifies
    it to them (budgets.covered_params)."""

    request_id: str
    hold_id: int | None
    amount_nano: int
    available_nano: int | None
    budgets: int = 0
    covered: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of a settle: what the request cost and what the organization has left."""

    charge_nano: int
    available_nano: int | None
    row: UsageRow


class CreditShort(Exception):
    """The organization's credit (plus overdraft) does not cover the request's hold."""

    def __init__(self, *, spendable_nano: int):
        super().__init__("not enough credit")
        self.spendable_nano = spendable_nano


def hold_key(request_id: str) -> str:
    return f"gw:{request_id}"


# --- hold ---------------------------------------------------------------------------------------------------------


async def hold_open(
    *,
    key: AuthenticatedKey,
    request_id: str,
    amount_nano: int,
    ttl_seconds: int,
    reason: str,
    workflow: str,
) -> Ticket:
    """Reserve `amount_nano` of the key's organization's credit (and of the budgets covering the request, the
    key's spend limits among them).

    Raises CreditShort or budgets.BudgetShort, having reserved nothing.
    """
    if amount_nano <= 0:
        return Ticket(request_id, None, 0, None)
    covered = budgets.covered_params(
        organization_id=key.organization_id, api_key_id=key.id, workflow=workflow, request_id=request_id
    )
    place = {
        "wallet_id": key.wallet_id,
        "amount_nano": amount_nano,
        "idempotency_key": hold_key(request_id),
        "actor": f"key:{key.id}",
        "ttl_seconds": ttl_seconds,
        "reason": reason,
        "budgeted": covered,
    }
    try:
        placed = await _hold_pg(place)
    except InsufficientCredit as exc:
        # What the wallet can spend includes any overdraft: close enough for the auto top-up's threshold.
        hooks.after_debit_soon(organization_id=key.organization_id, available_nano=exc.spendable_nano)
        raise CreditShort(spendable_nano=exc.spendable_nano) from None
    return Ticket(request_id, placed.hold_id, amount_nano, placed.available_nano, placed.budgets, covered)


async def _hold_pg(place: dict[str, Any]) -> ledger.HoldPlaced:
    pool = await pg.pool()
    async with pool.connection() as conn:
        try:
            return await ledger.ahold_place(conn, **place)
        except psycopg.Error as exc:
            if budgets.is_budget_error(exc):
                raise budgets.short_of(exc) from None
            raise


async def hold_cancel(ticket: Ticket, *, row: UsageRow) -> Charge:
    """Release a hold whose request never reached the model server (the client left first)."""
    return await settle(ticket=ticket, context=None, usage=None, row=row, at=None)


async def hold_withdraw(ticket: Ticket, *, actor: str, reason: str) -> None:
    """Release a hold whose request was refused before it started (rate limited while its hold was being placed):
    its credit and its claims on budgets come back, and no usage record is written, as for any
    refused request. Runs to completion even if the caller is cancelled."""
    if ticket.hold_id is not None:
        await shielded(_withdraw(ticket, actor=actor, reason=reason))


async def _withdraw(ticket: Ticket, *, actor: str, reason: str) -> None:
    assert ticket.hold_id is not None
    pool = await pg.pool()
    async with pool.connection() as conn:
        also = _also(ticket, captured_nano=0, budgets_joined=False)
        await ledger.ahold_settle(
            conn, hold_id=ticket.hold_id, status="released", captured_nano=0, actor=actor, reason=reason, also=also
        )


# --- settle -------------------------------------------------------------------------------------------------------


def rated_row(*, row: UsageRow, rated: rating.Rating, ticket: Ticket) -> UsageRow:
    """`row` with the charge of `rated`, capped at the hold: a request never costs more than was held for it.

    The hold covers every prompt token counted before the call plus max_tokens, so only an upstream reporting
    more prompt tokens than tiktoken counted can go past it; the excess is not charged, an adjustment line says
    so, and the record is flagged for review.
    """
    lines = [line.as_dict() for line in rated.lines]
    charge = rated.credit_nano
    drift = row.drift_flagged
    if ticket.hold_id is not None and charge > ticket.amount_nano:
        excess = charge - ticket.amount_nano
        lines.append(
            {
                "kind": "hold_cap",
                "source": "credit",
                "tokens": 0,
                "rate_micro_per_mtok": 0,
                "factor_bps": rating.BPS,
                "amount_nano": -excess,
                "price_version_id": rated.price_version_id,
                "detail": "the reported usage cost more than the request's hold; the charge is capped at the hold",
            }
        )
        charge, drift = ticket.amount_nano, True
    elif ticket.hold_id is None:
        charge = 0  # nothing could be held (a free model): nothing is charged
    return replace(
        row,
        charge_nano=charge,
        lines=lines,
        drift_flagged=drift,
        price_version_id=rated.price_version_id,
        quota_tokens=rated.quota_tokens,
        commitment_tokens=rated.commitment_tokens,
        hold_id=ticket.hold_id,
    )


async def settle(
    *,
    ticket: Ticket,
    context: rating.PricingContext | None,
    usage: rating.Usage | None,
    row: UsageRow,
    at: datetime | None,
) -> Charge:
    """Settle `ticket`: capture the rated cost of `usage` (None: release everything: the call failed) and write
    `row` as the request's usage record, in one transaction. Runs to completion even if the caller is cancelled.
    """
    return await shielded(_settle(ticket=ticket, context=context, usage=usage, row=row, at=at))


async def _settle(
    *,
    ticket: Ticket,
    context: rating.PricingContext | None,
    usage: rating.Usage | None,
    row: UsageRow,
    at: datetime | None,
) -> Charge:
    row = replace(row, hold_id=ticket.hold_id)
    try:
        charge = await _settle_pg(ticket, context, usage, row, at)
    except HoldNotOpen:
        # The hold expired before the answer came (the sweeper ran past its deadline): record the request,
        # uncharged, so it is visible; its hold was already returned to the organization.
        logger.error("hold %s of request %s closed before its settle", ticket.hold_id, ticket.request_id)
        return await _record_only(replace(row, charge_nano=0, lines=[], drift_flagged=True))
    if charge.charge_nano > 0 and charge.available_nano is not None:
        hooks.after_debit_soon(
            organization_id=row.organization_id, available_nano=charge.available_nano, budgeted=ticket.budgets > 0
        )
    return charge


def _also(ticket: Ticket, *, captured_nano: int, budgets_joined: bool) -> list[tuple[str, dict[str, Any]]]:
    """The corrections that settle after the ledger hold: the budgets' counters, unless they joined the settle's own
    statement (`budgets_joined`)."""
    also: list[tuple[str, dict[str, Any]]] = []
    if ticket.budgets and not budgets_joined:
        also.append((budgets.SETTLE, budgets.settle_params(covered=ticket.covered, captured_nano=captured_nano)))
    return also


async def _settle_pg(
    ticket: Ticket,
    context: rating.PricingContext | None,
    usage: rating.Usage | None,
    row: UsageRow,
    at: datetime | None,
) -> Charge:
    pool = await pg.pool()
    async with pool.connection() as conn:
        if usage is None or context is None or at is None:
            return await _capture_pg(conn, ticket, replace(row, charge_nano=0, lines=[]))
        if context.needs_period_state:
            # Claims of quota / commitment land with the charge or not at all.
            async with conn.transaction():
                rated = await pricing.ausage_rate(conn, usage=usage, at=at, context=context)
                return await _capture_pg(conn, ticket, rated_row(row=row, rated=rated, ticket=ticket))
        rated = rating.rate(usage=usage, context=context, state=rating.PeriodState())
        return await _capture_pg(conn, ticket, rated_row(row=row, rated=rated, ticket=ticket))


def _settle_terms(row: UsageRow) -> tuple[bool, str, str]:
    """How the hold of `row`'s call settles: (capture, actor, reason). A call that cost something, or succeeded at
    no cost, captures its charge; a failed one (nothing charged) releases the whole hold."""
    return (
        bool(row.charge_nano) or row.status == "ok",
        f"key:{row.api_key_id}",
        f"{row.endpoint} {row.model_slug} {row.status}",
    )


async def _capture_pg(conn: psycopg.AsyncConnection[Any], ticket: Ticket, row: UsageRow) -> Charge:
    if ticket.hold_id is None:
        await conn.execute(usage_services.USAGE_INSERT, usage_services.usage_insert_params(row))
        return Charge(row.charge_nano, None, row)
    capture, actor, reason = _settle_terms(row)
    settled = await ledger.ahold_settle(
        conn,
        hold_id=ticket.hold_id,
        status="captured" if capture else "released",
        captured_nano=row.charge_nano,
        actor=actor,
        reason=reason,
        attached=(usage_services.USAGE_INSERT, usage_services.usage_insert_params(row)),
        # The budgets' counters join the settle's statement: no statement more for budgets.
        attached_more=(
            (budgets.SETTLE_WITH, budgets.settle_params(covered=ticket.covered, captured_nano=row.charge_nano))
            if ticket.budgets
            else None
        ),
        also=_also(ticket, captured_nano=row.charge_nano, budgets_joined=True),
    )
    return Charge(row.charge_nano, settled.available_nano, row)


async def _record_only(row: UsageRow) -> Charge:
    row = replace(row, hold_id=None)
    pool = await pg.pool()
    async with pool.connection() as conn:
        await conn.execute(usage_services.USAGE_INSERT, usage_services.usage_insert_params(row))
    return Charge(0, None, row)


# --- the 402 message ----------------------------------------------------------------------------------------------


def affordable_max_tokens(
    *, prices: rating.Prices, prompt_tokens: int, budget_nano: int, service_tier: str, ceiling: int
) -> int:
    """The largest max_tokens (up to `ceiling`) whose hold fits in `budget_nano`; 0 if not even one."""
    low, high = 0, max(0, ceiling)

    def fits(max_tokens: int) -> bool:
        cost = rating.max_charge_nano(
            prices=prices, prompt_tokens=prompt_tokens, max_tokens=max_tokens, service_tier=service_tier
        )
        return cost <= budget_nano

    if not fits(1):
        return 0
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
