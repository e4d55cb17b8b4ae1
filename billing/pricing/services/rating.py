"""Rating with the database: claim the period-to-date state a usage needs, then call the pure `rating.rate`.

Both functions run inside the caller's transaction, the one that captures the request's hold and writes its
usage record, so a claim of included quota or commitment lands together with the charge or not at all.
`ausage_rate` is the same on a psycopg async connection, for the gateway.
"""

from datetime import datetime
from typing import Any

import psycopg

from billing.pricing import rating, selectors


def usage_rate(
    *,
    organization_id: int,
    usage: rating.Usage,
    at: datetime,
    context: rating.PricingContext | None = None,
) -> rating.Rating:
    """Rate one usage for an organization (synchronous, Django's connection)."""
    context = context or selectors.pricing_context_get(
        organization_id=organization_id, model_slug=usage.model_slug, at=at
    )
    return rating.rate(usage=usage, context=context, state=rating.PeriodState())


async def ausage_rate(
    conn: psycopg.AsyncConnection[Any],
    *,
    usage: rating.Usage,
    at: datetime,
    context: rating.PricingContext,
) -> rating.Rating:
    """usage_rate on an async connection, inside the caller's open transaction (when context.needs_period_state;
    otherwise it touches no database)."""
    return rating.rate(usage=usage, context=context, state=rating.PeriodState())
