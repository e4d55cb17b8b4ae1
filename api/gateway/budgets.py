"""GET /v1/budgets: the budgets of the caller's organization and what each has left in its current period, so a
program can pace itself before a 402. Read-only: a key cannot change the budgets that cap it (people do, in the web
UI or through /api/budgets/). A key allowed the balance endpoint may read them."""

from django.http import HttpRequest, JsonResponse

from accounts.models import Organization
from api.budgets import budget_json
from api.gateway.http import gateway_view, key_authenticate
from billing.metering.budgets import selectors
from billing.metering.budgets.selectors import BudgetState
from core.orm import orm_call


def _listed(organization_id: int) -> tuple[list[BudgetState], str]:
    currency = Organization.objects.values_list("currency", flat=True).get(pk=organization_id)
    return selectors.budget_list(organization_id=organization_id), currency


@gateway_view("GET")
async def budgets(request: HttpRequest) -> JsonResponse:
    key = await key_authenticate(request, endpoint="balance")
    states, currency = await orm_call(_listed, key.organization_id)
    return JsonResponse({"object": "list", "data": [budget_json(state, currency=currency) for state in states]})
