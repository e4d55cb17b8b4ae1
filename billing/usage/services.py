"""Writes of usage records: one row per metered request (gateway call or reported usage event).

The gateway writes its record in the transaction that settles the request's ledger hold, as part of the settle's
own statement (`USAGE_INSERT` with `usage_insert_params`, passed to ledger.services.ahold_settle's
`attached`); `usage_record_create` sends the same statement on Django's connection (reported usage events).
"""

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from billing.usage.models import UsageRecord


@dataclass(slots=True)
class UsageRow:
    """Everything a usage record holds (counts and metadata only: never prompt or completion text)."""

    organization_id: int
    api_key_id: int | None
    source: str
    request_id: str
    endpoint: str
    workflow: str
    model_slug: str
    service_tier: str
    status: str
    served_by: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    usage_reported: bool = False
    drift_flagged: bool = False
    price_version_id: int | None = None
    charge_nano: int = 0
    quota_tokens: int = 0
    commitment_tokens: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)
    hold_id: int | None = None
    latency_ms: int = 0
    created_at: datetime | None = None


# The model is found by its slug in the statement itself, so the gateway needs no id of its own for it. A slug
# that names no model leaves model_id NULL, which the column refuses: the statement fails, and with it the
# transaction it is part of (a settle), rather than inserting nothing and letting a charge go unrecorded.
USAGE_INSERT = """
INSERT INTO usage_usagerecord (
    organization_id, api_key_id, source, request_id, endpoint, workflow, model_id, service_tier, status, served_by,
    input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, estimated_input_tokens,
    estimated_output_tokens, usage_reported, drift_flagged, price_version_id, charge_nano, quota_tokens,
    commitment_tokens, lines, hold_id, latency_ms, created_at
)
VALUES (
    %(organization_id)s::bigint, %(api_key_id)s::bigint, %(source)s::text, %(request_id)s::text,
    %(endpoint)s::text, %(workflow)s::text, (SELECT m.id FROM pricing_aimodel m WHERE m.slug = %(model_slug)s::text),
    %(service_tier)s::text, %(status)s::text, %(served_by)s::text,
    %(input_tokens)s::bigint, %(cached_input_tokens)s::bigint, %(output_tokens)s::bigint,
    %(reasoning_tokens)s::bigint, %(estimated_input_tokens)s::bigint, %(estimated_output_tokens)s::bigint,
    %(usage_reported)s::boolean,
    %(drift_flagged)s::boolean, %(price_version_id)s::bigint, %(charge_nano)s::bigint, %(quota_tokens)s::bigint,
    %(commitment_tokens)s::bigint, %(lines)s::jsonb, %(hold_id)s::bigint, %(latency_ms)s::integer,
    coalesce(%(created_at)s::timestamptz, now())
)
"""


_FIELDS = tuple(f.name for f in fields(UsageRow))
# The latency column is a PostgreSQL integer: a longer time (or a clock gone backwards) is stored at its bound.
MAX_LATENCY_MS = 2_147_483_647


def _latency_ms(row: UsageRow) -> int:
    return max(0, min(row.latency_ms, MAX_LATENCY_MS))


def usage_insert_params(row: UsageRow) -> dict[str, Any]:
    # A shallow copy (dataclasses.asdict deep-copies the lines, which the hot path does not need).
    params = {name: getattr(row, name) for name in _FIELDS}
    params["lines"] = Jsonb(row.lines)
    params["latency_ms"] = _latency_ms(row)
    return params


def usage_record_create(*, row: UsageRow) -> UsageRecord:
    """Write `row` with USAGE_INSERT on Django's connection, inside the caller's transaction; the record written."""
    (record,) = UsageRecord.objects.raw(f"{USAGE_INSERT} RETURNING *", usage_insert_params(row))
    return record


# Adds a batch of refusal counts (parallel arrays: one element per (organization, day, key, workflow, status,
# reason)) in one statement; a key deleted meanwhile is counted without it rather than failing the batch.
REFUSALS_UPSERT = """
INSERT INTO usage_refusalcount AS r (organization_id, day, api_key_id, workflow, status, reason, count)
SELECT b.organization_id, b.day, k.id, b.workflow, b.status, b.reason, sum(b.count)
  FROM unnest(%(organization_ids)s::bigint[], %(days)s::date[], %(api_key_ids)s::bigint[], %(workflows)s::text[],
              %(statuses)s::smallint[], %(reasons)s::text[], %(counts)s::bigint[])
       AS b(organization_id, day, api_key_id, workflow, status, reason, count)
  LEFT JOIN accounts_apikey k ON k.id = b.api_key_id
 GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organization_id, day, api_key_id, workflow, status, reason)
    DO UPDATE SET count = r.count + excluded.count
"""
