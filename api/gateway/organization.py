"""The organization's billing data for programs, read with an admin API key (accounts.models.ApiKeyAccess), in the
shape of OpenAI's organization endpoints:

- GET /v1/organization/costs: credit spent per time bucket, grouped by model, api_key_id, workflow, line_item;
- GET /v1/organization/usage/completions and /usage/embeddings: tokens and requests per time bucket, grouped by
  model, api_key_id, workflow;
- GET /v1/organization/balance: the organization's credit;
- GET /v1/organization/budgets: its budgets with their current period's consumption (as GET /v1/budgets), optionally
  only one scope (scope=organization, workflow or api_key).

Query parameters: start_time (unix seconds, required), end_time (unix seconds, exclusive; default now),
bucket_width (1h or 1d; default 1d), group_by (repeated or comma-separated), models / api_key_ids / workflows
(filters, repeated or comma-separated), limit (buckets per page), page (the next_page of the previous answer).
Amounts are decimal strings with their integer nano-units beside them, never floats.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest, JsonResponse, QueryDict

from api.gateway.balance import balance_body
from api.gateway.budgets import budgets_body
from api.gateway.http import GatewayError, admin_key_authenticate, gateway_view
from billing.ledger import selectors as ledger_selectors
from billing.metering.models import BudgetScope
from billing.usage import reports
from core.money import format_amount
from core.orm import orm_call

WIDTHS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
# Buckets in a page: (default, most), as OpenAI's organization endpoints.
LIMITS = {"1h": (24, 168), "1d": (7, 31)}
# 2100-01-01: a bound that keeps every time a valid PostgreSQL timestamp and every sum exact.
MAX_TIME = 4_102_444_800
MAX_FILTER_VALUES = 100
_COMMON = frozenset({"start_time", "end_time", "bucket_width", "group_by", "limit", "page"})
_FILTERS = ("models", "api_key_ids", "workflows")


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_value")


def _values(query: QueryDict, name: str) -> tuple[str, ...]:
    """A list parameter: repeated (`name=a&name=b`, also `name[]=`) or comma-separated."""
    raw = [*query.getlist(name), *query.getlist(f"{name}[]")]
    values = tuple(dict.fromkeys(v.strip() for item in raw for v in item.split(",") if v.strip()))
    if len(values) > MAX_FILTER_VALUES:
        raise _invalid(f"{name} takes at most {MAX_FILTER_VALUES} values.", name)
    if any(len(v) > 200 for v in values):
        raise _invalid(f"A value of {name} is longer than 200 characters.", name)
    return values


def _unix(query: QueryDict, name: str, *, default: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise _invalid(f"{name} is required: the start of the range, in unix seconds (e.g. 1735689600).", name)
        return default
    if not raw.isdigit() or int(raw) > MAX_TIME:
        raise _invalid(f"{name} must be a whole number of unix seconds between 0 and {MAX_TIME}; got {raw!r}.", name)
    return int(raw)


def report_range(request: HttpRequest, organization_id: int, *, groups: tuple[str, ...]) -> reports.ReportRange:
    """The report a request asks for; GatewayError 400 naming the parameter for anything it cannot be."""
    query = request.GET
    unknown = sorted({name.removesuffix("[]") for name in query} - _COMMON - set(_FILTERS))
    if unknown:
        known = ", ".join(sorted(_COMMON | set(_FILTERS)))
        raise _invalid(f"Unknown query parameter {unknown[0]!r}; this endpoint takes {known}.", unknown[0])
    width_name = query.get("bucket_width") or "1d"
    if width_name not in WIDTHS:
        raise _invalid(f"bucket_width must be 1h or 1d; got {width_name!r}.", "bucket_width")
    width = WIDTHS[width_name]
    start = _unix(query, "start_time")
    # Default: up to now, the current second included.
    end = _unix(query, "end_time", default=max(int(time.time()) + 1, start + 1))
    if end <= start:
        raise _invalid("end_time must be after start_time.", "end_time")
    default_limit, max_limit = LIMITS[width_name]
    raw_limit = query.get("limit") or str(default_limit)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_limit:
        raise _invalid(f"limit must be a whole number from 1 to {max_limit} for bucket_width={width_name}.", "limit")
    group_by = _values(query, "group_by")
    for name in group_by:
        if name not in groups:
            raise _invalid(f"group_by {name!r} is not one of {', '.join(groups)}.", "group_by")
    first = start
    page = query.get("page")
    if page:
        # The cursor is the start of the page's first bucket: it must be one of this range's buckets.
        number = page.removeprefix("page_")
        seconds = int(width.total_seconds())
        if not number.isdigit() or not start <= int(number) < end or (int(number) - start) % seconds:
            raise _invalid("page is not a cursor of this range; pass the next_page of the previous answer.", "page")
        first = int(number)
    return reports.ReportRange(
        organization_id=organization_id,
        first=datetime.fromtimestamp(first, UTC),
        end=datetime.fromtimestamp(end, UTC),
        width=width,
        limit=int(raw_limit),
        group_by=group_by,
        models=_values(query, "models"),
        api_key_ids=_values(query, "api_key_ids"),
        workflows=_values(query, "workflows"),
    )


def _page(report: reports.ReportRange, buckets: list[dict[str, Any]]) -> JsonResponse:
    return JsonResponse(
        {
            "object": "page",
            "data": buckets,
            "has_more": report.has_more,
            "next_page": f"page_{int(report.page_end.timestamp())}" if report.has_more else None,
        }
    )


def _bucket(bucket: reports.Bucket, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "bucket",
        "start_time": int(bucket.start.timestamp()),
        "end_time": int(bucket.end.timestamp()),
        "results": results,
    }


def _groups(result: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    # Fields not grouped by are null, as in OpenAI's results; usage without a key has a null api_key_id.
    return {name: result.get(name) for name in names}


@gateway_view("GET")
async def costs(request: HttpRequest) -> JsonResponse:
    key = await admin_key_authenticate(request)
    report = report_range(request, key.organization_id, groups=reports.COST_GROUPS)
    buckets = await orm_call(reports.costs_bucketed, report=report)
    currency = (await orm_call(ledger_selectors.wallet_balance, organization_id=key.organization_id)).currency
    data = [
        _bucket(
            bucket,
            [
                {
                    "object": "organization.costs.result",
                    "amount": {
                        "value": format_amount(result["amount_nano"]),
                        "value_nano": result["amount_nano"],
                        "currency": currency,
                    },
                    **_groups(result, reports.COST_GROUPS),
                }
                for result in bucket.results
            ],
        )
        for bucket in buckets
    ]
    return _page(report, data)


async def _usage(request: HttpRequest, *, endpoint: str, kind: str) -> JsonResponse:
    key = await admin_key_authenticate(request)
    report = report_range(request, key.organization_id, groups=reports.USAGE_GROUPS)
    buckets = await orm_call(reports.usage_bucketed, report=report, endpoint=endpoint)
    data = [
        _bucket(
            bucket,
            [
                {
                    "object": f"organization.usage.{kind}.result",
                    **{name: result[name] for name in reports.USAGE_SUMS},
                    **_groups(result, reports.USAGE_GROUPS),
                }
                for result in bucket.results
            ],
        )
        for bucket in buckets
    ]
    return _page(report, data)


@gateway_view("GET")
async def usage_completions(request: HttpRequest) -> JsonResponse:
    return await _usage(request, endpoint="chat", kind="completions")


@gateway_view("GET")
async def usage_embeddings(request: HttpRequest) -> JsonResponse:
    return await _usage(request, endpoint="embeddings", kind="embeddings")


@gateway_view("GET")
async def balance(request: HttpRequest) -> JsonResponse:
    key = await admin_key_authenticate(request)
    state = await orm_call(ledger_selectors.wallet_balance, organization_id=key.organization_id)
    return JsonResponse(balance_body(state))


@gateway_view("GET")
async def budgets(request: HttpRequest) -> JsonResponse:
    key = await admin_key_authenticate(request)
    unknown = sorted(set(request.GET) - {"scope"})
    if unknown:
        raise _invalid(f"Unknown query parameter {unknown[0]!r}; this endpoint takes scope.", unknown[0])
    scope = request.GET.get("scope") or None
    if scope is not None and scope not in BudgetScope.values:
        raise _invalid(f"scope must be one of {', '.join(BudgetScope.values)}; got {scope!r}.", "scope")
    return JsonResponse(await budgets_body(key.organization_id, scope=scope))
