"""Costs and token usage of one organization in time buckets, aggregated in SQL (the /v1/organization/costs and
/v1/organization/usage/* endpoints read these).

Buckets start at the range's start and are `width` long (one hour or one day); every bucket of the page is
returned, empty ones too, as OpenAI's organization endpoints do. A page is a run of at most `limit` buckets from
`first`; the caller pages on by asking again from the first bucket it did not get.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

# What a result can be grouped by, and the SQL expression of each (the columns of the rows the queries read).
COST_GROUPS = ("model", "api_key_id", "workflow", "line_item")
USAGE_GROUPS = ("model", "api_key_id", "workflow")
_GROUP_SQL = {
    "model": "m.slug",
    "api_key_id": "k.key_id",
    "workflow": "u.workflow",
    "line_item": "l.value->>'kind'",
}


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ReportRange:
    organization_id: int
    first: datetime  # the first bucket of this page
    end: datetime  # the end of the whole range (exclusive)
    width: timedelta
    limit: int  # buckets in a page
    group_by: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()  # the keys' public ids
    workflows: tuple[str, ...] = ()

    @property
    def page_end(self) -> datetime:
        return min(self.first + self.width * self.limit, self.end)

    @property
    def has_more(self) -> bool:
        return self.page_end < self.end

    def bucket_starts(self) -> list[datetime]:
        starts, at = [], self.first
        while at < self.page_end:
            starts.append(at)
            at += self.width
        return starts


def _where(report: ReportRange, params: dict[str, Any]) -> str:
    """The filters every report applies: the organization (always: no other organization's row is ever read), the
    page's time range, and the optional model / key / workflow filters."""
    params |= {"org": report.organization_id, "first": report.first, "page_end": report.page_end}
    clauses = ["u.organization_id = %(org)s", "u.created_at >= %(first)s", "u.created_at < %(page_end)s"]
    if report.models:
        clauses.append("m.slug = ANY(%(models)s)")
        params["models"] = list(report.models)
    if report.api_key_ids:
        clauses.append("k.key_id = ANY(%(key_ids)s)")
        params["key_ids"] = list(report.api_key_ids)
    if report.workflows:
        clauses.append("u.workflow = ANY(%(workflows)s)")
        params["workflows"] = list(report.workflows)
    return " AND ".join(clauses)


def _bucketed(report: ReportRange, sql: str, params: dict[str, Any], names: tuple[str, ...]) -> list[Bucket]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    by_start: dict[datetime, list[dict[str, Any]]] = {start: [] for start in report.bucket_starts()}
    for row in rows:
        result = dict(zip(names, row[1:], strict=True))
        by_start.setdefault(row[0], []).append(result)
    return [Bucket(start, min(start + report.width, report.end), results) for start, results in by_start.items()]


def _select(report: ReportRange) -> tuple[str, str]:
    """(the bucket's start, the grouping columns) as SQL. date_bin aligns buckets on the range's start."""
    bucket = "date_bin(%(width)s, u.created_at, %(origin)s)"
    groups = ", ".join(_GROUP_SQL[name] for name in report.group_by)
    return bucket, groups


# Templates filled with fixed fragments only (group names are checked against _GROUP_SQL); every value is a
# query parameter.
_COSTS_SQL = """
    SELECT {bucket} AS bucket{groups}, {amount}::bigint AS amount_nano
      FROM usage_usagerecord u
      JOIN pricing_aimodel m ON m.id = u.model_id
      LEFT JOIN accounts_apikey k ON k.id = u.api_key_id
      {join_lines}
     WHERE {where}
     GROUP BY 1{groups}
     ORDER BY 1{groups}
"""
_USAGE_SQL = """
    SELECT {bucket} AS bucket{groups},
           sum(u.input_tokens)::bigint, sum(u.cached_input_tokens)::bigint, sum(u.output_tokens)::bigint,
           sum(u.reasoning_tokens)::bigint, count(*)
      FROM usage_usagerecord u
      JOIN pricing_aimodel m ON m.id = u.model_id
      LEFT JOIN accounts_apikey k ON k.id = u.api_key_id
     WHERE {where} AND u.endpoint = %(endpoint)s
       AND u.status NOT IN ('upstream_error', 'upstream_timeout')
     GROUP BY 1{groups}
     ORDER BY 1{groups}
"""


def costs_bucketed(*, report: ReportRange) -> list[Bucket]:
    """Credit spent per bucket (and group), in nano-units: the sum of the usage records' charges, or with
    `line_item` in the grouping, of their charge lines by kind (input, cached_input, output, reasoning, ...)."""
    params: dict[str, Any] = {"width": report.width, "origin": report.first}
    bucket, groups = _select(report)
    lines = "line_item" in report.group_by
    amount = "sum((l.value->>'amount_nano')::bigint)" if lines else "sum(u.charge_nano)"
    join_lines = "CROSS JOIN LATERAL jsonb_array_elements(u.lines) AS l(value)" if lines else ""
    group_select = f", {groups}" if groups else ""
    sql = _COSTS_SQL.format(
        bucket=bucket,
        groups=group_select,
        amount=amount,
        join_lines=join_lines,
        where=_where(report, params),
    )
    return _bucketed(report, sql, params, (*report.group_by, "amount_nano"))


USAGE_SUMS = ("input_tokens", "input_cached_tokens", "output_tokens", "output_reasoning_tokens", "num_model_requests")


def usage_bucketed(*, report: ReportRange, endpoint: str) -> list[Bucket]:
    """Tokens and requests per bucket (and group) of one endpoint ("chat" or "embeddings"). Calls the model
    server failed (never charged) are left out, as they did no work."""
    params: dict[str, Any] = {"width": report.width, "origin": report.first, "endpoint": endpoint}
    bucket, groups = _select(report)
    group_select = f", {groups}" if groups else ""
    sql = _USAGE_SQL.format(bucket=bucket, groups=group_select, where=_where(report, params))
    return _bucketed(report, sql, params, (*report.group_by, *USAGE_SUMS))
