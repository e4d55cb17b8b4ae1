"""Rating with the database: claim the period-to-date state a usage needs, then call the pure `rating.rate`.

Both functions run inside the caller's transaction, the one that captures the request's hold and writes its
usage record, so a claim of included quota, commitment or tier volume lands together with the charge or not at
all. `ausage_rate` is the same on a psycopg async connection, for the gateway. The claims are planned once
(`_claims`, a generator of statements of billing.pricing.sql) and driven by either connection, so both paths
send the same SQL in the same (lock) order. With nothing to claim (`context.needs_period_state` is False)
neither touches the database.
"""

from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg.pq import TransactionStatus

from billing.pricing import rating, selectors, sql

Statement = tuple[str, dict[str, Any]]
Claims = Generator[Statement, Sequence[Any] | None, rating.PeriodState]


def _claims(*, usage: rating.Usage, context: rating.PricingContext) -> Claims:
    """Yield the claim statements for `usage` in lock order, receiving each one's row; return the state."""
    want = usage.total_tokens
    granted: list[int] = []
    for allowance in context.allowances:
        if want <= 0:
            break
        row = yield (
            sql.CLAIM_ALLOWANCE,
            {
                "organization_id": context.organization_id,
                "kind": allowance.source,
                "owner_id": allowance.owner_id,
                "scope_key": allowance.scope_key,
                "period_start": allowance.period_start,
                "period_end": allowance.period_end,
                "limit": allowance.limit_tokens,
                "want": want,
            },
        )
        got = int(row[0]) if row else 0
        granted.append(got)
        want -= got
    state = rating.PeriodState(granted_tokens=tuple(granted))
    tier = context.tier
    if tier is None:
        return state
    amount = rating.tier_volume_nano(usage=usage, context=context, state=state)
    if not amount:
        return state
    row = yield (
        sql.CLAIM_TIER,
        {
            "organization_id": context.organization_id,
            "owner_id": tier.schedule_id,
            "scope_key": tier.scope_key,
            "period_start": tier.period_start,
            "period_end": tier.period_end,
            "amount": amount,
        },
    )
    assert row is not None  # the tier claim always returns its row
    return rating.PeriodState(granted_tokens=tuple(granted), tier_volume_before_nano=int(row[0]))


def usage_rate(
    *,
    organization_id: int,
    usage: rating.Usage,
    at: datetime,
    context: rating.PricingContext | None = None,
) -> rating.Rating:
    """Rate one usage for an organization (synchronous, Django's connection, inside the caller's transaction;
    one is opened if there is none, so the claims at least land together)."""
    context = context or selectors.pricing_context_get(
        organization_id=organization_id, model_slug=usage.model_slug, at=at
    )
    if not context.needs_period_state:
        return rating.rate(usage=usage, context=context, state=rating.PeriodState())
    plan = _claims(usage=usage, context=context)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        try:
            statement = next(plan)
            while True:
                cursor.execute(*statement)
                statement = plan.send(cursor.fetchone())
        except StopIteration as done:
            state: rating.PeriodState = done.value
    return rating.rate(usage=usage, context=context, state=state)


async def ausage_rate(
    conn: psycopg.AsyncConnection[Any],
    *,
    usage: rating.Usage,
    at: datetime,
    context: rating.PricingContext,
) -> rating.Rating:
    """usage_rate on an async connection, inside the caller's open transaction (when context.needs_period_state;
    otherwise it touches no database)."""
    if not context.needs_period_state:
        return rating.rate(usage=usage, context=context, state=rating.PeriodState())
    if conn.info.transaction_status == TransactionStatus.IDLE:
        raise RuntimeError(
            "ausage_rate claims period counters: call it inside the transaction that settles the usage's hold"
        )
    plan = _claims(usage=usage, context=context)
    try:
        statement = next(plan)
        while True:
            cursor = await conn.execute(*statement)
            statement = plan.send(await cursor.fetchone())
    except StopIteration as done:
        state: rating.PeriodState = done.value
    return rating.rate(usage=usage, context=context, state=state)
