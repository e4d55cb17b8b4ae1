"""The organization's billing data for programs (/v1/organization/*, admin keys only) in the OpenAPI schema."""

from typing import Any

from api.gateway import organization
from api.gateway.schema.responses import amount, errors, nano, ref
from billing.metering.models import BudgetScope

TAG = {
    "name": "organization",
    "description": "Costs, token usage, balance and budgets of the organization, for programs, read with an admin "
    "API key (one that calls no model); a metered key gets 403.",
}
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKeyAuth": []}]
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An admin API key (created as 'Admin: reads billing data' on the API keys page): it reads the "
    "organization's costs, usage, balance and budgets, and cannot call models.",
}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _list(name: str, values: tuple[str, ...] | None, description: str) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "string", "maxLength": 200}
    if values:
        item = {"type": "string", "enum": list(values)}
    parameter = _query(name, {"type": "array", "items": item, "maxItems": organization.MAX_FILTER_VALUES}, description)
    return parameter | {"style": "form", "explode": True}


def _parameters(groups: tuple[str, ...]) -> list[dict[str, Any]]:
    time = {"type": "integer", "minimum": 0, "maximum": organization.MAX_TIME}
    return [
        _query("start_time", time, "Start of the range, unix seconds (inclusive).", required=True),
        _query("end_time", time, "End of the range, unix seconds (exclusive); default now."),
        _query("bucket_width", {"type": "string", "enum": list(organization.WIDTHS)}, "Bucket width; default 1d."),
        _list("group_by", groups, "Group each bucket's results by these fields (repeated or comma-separated)."),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": max(m for _, m in organization.LIMITS.values())},
            "Buckets per page: 1h 1-168 (default 24), 1d 1-31 (default 7).",
        ),
        _query("page", {"type": "string", "maxLength": 40}, "The `next_page` of the previous page."),
        _list("models", None, "Only these models."),
        _list("api_key_ids", None, "Only these keys (their public ids, as in results)."),
        _list("workflows", None, "Only these workflows."),
    ]


def _page(result: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data", "has_more", "next_page"],
        "properties": {
            "object": {"type": "string", "enum": ["page"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "enum": ["bucket"]},
                        "start_time": {"type": "integer"},
                        "end_time": {"type": "integer"},
                        "results": {"type": "array", "items": ref(result)},
                    },
                },
            },
            "has_more": {"type": "boolean"},
            "next_page": {"type": "string", "nullable": True},
        },
    }


_NULLABLE = {"type": "string", "nullable": True}
_USAGE_RESULT = {
    "type": "object",
    "properties": {
        "object": {"type": "string"},
        "input_tokens": {"type": "integer", "description": "Prompt tokens, cached included"},
        "input_cached_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer", "description": "Completion tokens, reasoning included"},
        "output_reasoning_tokens": {"type": "integer"},
        "num_model_requests": {"type": "integer"},
        "model": _NULLABLE,
        "api_key_id": _NULLABLE,
        "workflow": _NULLABLE,
    },
}

SCHEMAS: dict[str, Any] = {
    "OrganizationCostsResult": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["organization.costs.result"]},
            "amount": {
                "type": "object",
                "properties": {
                    "value": amount("Credit spent", "0.0123"),
                    "value_nano": nano("Credit spent", 12300000),
                    "currency": {"type": "string", "example": "USD"},
                },
            },
            "model": _NULLABLE,
            "api_key_id": _NULLABLE,
            "workflow": _NULLABLE,
            "line_item": {
                "type": "string",
                "nullable": True,
                "description": "A charge line's kind: input, cached_input, output, reasoning, request_fee, "
                "priority_surcharge, volume_discount",
            },
        },
    },
    "OrganizationCostsPage": _page("OrganizationCostsResult"),
    "OrganizationUsageResult": _USAGE_RESULT,
    "OrganizationUsagePage": _page("OrganizationUsageResult"),
}


def _get(
    operation_id: str,
    summary: str,
    description: str,
    schema: str,
    groups: tuple[str, ...] | None,
    *,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    parameters = _parameters(groups) if groups else parameters or []
    return {
        "get": {
            "operationId": operation_id,
            "tags": ["organization"],
            "summary": summary,
            "description": description,
            "security": ADMIN_SECURITY,
            "parameters": parameters,
            "responses": {
                "200": {"description": summary, "content": {"application/json": {"schema": ref(schema)}}},
                **errors(*((400,) if parameters else ()), 401, 403, 405, 500),
            },
        }
    }


_USAGE = (
    "Tokens and requests of {what} per time bucket, grouped and filtered by model, key and workflow; calls the "
    "model server failed (never charged) are left out."
)
PATHS: dict[str, Any] = {
    "/v1/organization/costs": _get(
        "v1_organization_costs",
        "Costs",
        "Credit spent per time bucket (hour or day, aligned on start_time), every bucket of the page listed, empty "
        "ones too; grouped by model, api_key_id, workflow and line_item (the charge lines' kinds). Amounts are "
        "decimal strings with their nano-units beside them.",
        "OrganizationCostsPage",
        organization.reports.COST_GROUPS,
    ),
    "/v1/organization/usage/completions": _get(
        "v1_organization_usage_completions",
        "Completions usage",
        _USAGE.format(what="chat completions"),
        "OrganizationUsagePage",
        organization.reports.USAGE_GROUPS,
    ),
    "/v1/organization/usage/embeddings": _get(
        "v1_organization_usage_embeddings",
        "Embeddings usage",
        _USAGE.format(what="embeddings"),
        "OrganizationUsagePage",
        organization.reports.USAGE_GROUPS,
    ),
    "/v1/organization/balance": _get(
        "v1_organization_balance",
        "Balance",
        "The organization's available, held and soon-expiring credit (as GET /v1/balance).",
        "Balance",
        None,
    ),
    "/v1/organization/budgets": _get(
        "v1_organization_budgets",
        "Budgets",
        "The organization's budgets (its own, its workflows', its keys') with what each spent, holds and has left in "
        "its current period, and when it resets (as GET /v1/budgets); `scope` keeps one kind.",
        "BudgetList",
        None,
        parameters=[
            _query("scope", {"type": "string", "enum": list(BudgetScope.values)}, "Only the budgets of this scope.")
        ],
    ),
}
