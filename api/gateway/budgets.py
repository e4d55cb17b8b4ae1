"""GET /v1/budgets: the budgets of the caller's organization and what each has left in its current period, so a
program can pace itself before a 402. Read-only: a key cannot change the budgets that cap it (people do, in the web
UI or through /api/budgets/). A key allowed the balance endpoint may read them; an admin key reads the same list at
GET /v1/organization/budgets."""

from typing import Any

from django.http import HttpRequest, JsonResponse

from accounts.models import Organization
from api.budgets import budget_json
from api.gateway.http import gateway_view, key_authenticate
from billing.metering.budgets import selectors
from billing.metering.budgets.selectors import BudgetState
from core.orm import orm_call


def _listed(organization_id: int, scope: str | None) -> tuple[list[BudgetState], str]:
    currency = Organization.objects.values_list("currency", flat=True).get(pk=organization_id)
    states = selectors.budget_list(organization_id=organization_id)
    return [state for state in states if scope is None or state.budget.scope == scope], currency


async def budgets_body(organization_id: int, *, scope: str | None = None) -> dict[str, Any]:
    """The list of the organization's budgets (of one scope if given), each with its current period."""
    states, currency = await orm_call(_listed, organization_id, scope)
    return {"object": "list", "data": [budget_json(state, currency=currency) for state in states]}


@gateway_view("GET")
async def budgets(request: HttpRequest) -> JsonResponse:
    key = await key_authenticate(request, endpoint="balance")
    return JsonResponse(await budgets_body(key.organization_id))
