"""/api/budgets/: the organization's budgets as JSON for people signed in to the web UI (session and CSRF, like the
billing pages' endpoints), in the public OpenAPI schema. API keys read the same objects at GET /v1/budgets but
cannot change them: a key must not raise the budget that caps it.

Everyone in the organization reads them; owners and developers change workflow and API key budgets, owners and
billing admins change any budget (the organization's too).
"""

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ids import is_id_text
from accounts.models import Membership
from accounts.permissions import Capability, membership_can
from api.budgets import budget_json
from api.parsers import SafeJSONParser
from billing.metering.budgets import selectors, services
from billing.metering.errors import BudgetNotFound
from billing.metering.models import BudgetMode, BudgetPeriod, BudgetScope
from core.errors import ApplicationError
from core.money import AmountError, parse_amount
from web.context import current_membership


class ViewsOrganization(BasePermission):
    """A member of the current organization (any role); sets request.membership."""

    message = "Sign in and choose an organization to see its budgets."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        membership = current_membership(request._request)
        if not membership_can(membership, Capability.VIEW):
            return False
        request.membership = membership  # type: ignore[attr-defined]
        return True


def budget_change_allowed(membership: Membership, scope: str) -> bool:
    """Owners and billing admins change any budget; developers (who manage keys) their workflows' and keys'."""
    if membership_can(membership, Capability.MANAGE_BILLING):
        return True
    return scope != BudgetScope.ORGANIZATION and membership_can(membership, Capability.MANAGE_KEYS)


def _require_change(request: Request, scope: str) -> None:
    if not budget_change_allowed(request.membership, scope):  # type: ignore[attr-defined]
        raise PermissionDenied(
            "Only owners and billing admins can change the organization's budget."
            if scope == BudgetScope.ORGANIZATION
            else "Only owners, billing admins and developers can change budgets."
        )


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApplicationError("the body must be a JSON object", code="invalid_body")
    return request.data


def _amount(value: object) -> int:
    """The budget's amount: a decimal string in the currency's main unit ("25.00"), as everywhere in the API."""
    if not isinstance(value, str):
        raise ApplicationError(
            'amount must be a decimal string in the currency\'s main unit, e.g. "25.00"', param="amount"
        )
    try:
        return parse_amount(value)
    except AmountError as error:
        raise ApplicationError(f"amount: {error}", param="amount") from None


def _budget_id(raw: str) -> int:
    if not is_id_text(raw):
        raise BudgetNotFound("budget not found", param="budget_id")
    return int(raw)


def _organization(request: Request) -> tuple[int, str]:
    membership = request.membership  # type: ignore[attr-defined]
    return membership.organization_id, membership.organization.currency


PERIOD = serializers.ChoiceField(choices=BudgetPeriod.choices, help_text="Calendar period in UTC (weeks start Monday).")
MODE = serializers.ChoiceField(
    choices=BudgetMode.choices, help_text="alert: only alerts; hard: calls that could pass it are refused (402)."
)
THRESHOLDS = serializers.ListField(
    child=serializers.IntegerField(min_value=1, max_value=1000),
    help_text="Percentages of the amount at which owners and billing admins are emailed, once per period.",
)
CHANGE = inline_serializer(
    "BudgetChange",
    {
        "amount": serializers.CharField(help_text='e.g. "25.00"'),
        "period": PERIOD,
        "mode": MODE,
        "thresholds": THRESHOLDS,
    },
)
CREATE = inline_serializer(
    "BudgetCreate",
    {
        "scope": serializers.ChoiceField(choices=BudgetScope.choices),
        "workflow": serializers.CharField(required=False, help_text="The workflow tag, for scope workflow."),
        "api_key_id": serializers.IntegerField(required=False, help_text="The key's id, for scope api_key."),
        "amount": serializers.CharField(help_text='e.g. "25.00"'),
        "period": PERIOD,
        "mode": MODE,
        "thresholds": THRESHOLDS,
    },
)
MONEY = serializers.CharField()
BUDGET = inline_serializer(
    "Budget",
    {
        "object": serializers.CharField(),
        "id": serializers.IntegerField(),
        "scope": serializers.CharField(),
        "workflow": serializers.CharField(allow_null=True),
        "api_key_id": serializers.IntegerField(allow_null=True),
        "api_key": inline_serializer(
            "BudgetApiKey",
            {"id": serializers.IntegerField(), "key_id": serializers.CharField(), "name": serializers.CharField()},
            allow_null=True,
            help_text="An API key budget's key; key_id is its public id, as /v1's usage names it.",
        ),
        "period": serializers.CharField(),
        "mode": serializers.CharField(),
        "thresholds": serializers.ListField(child=serializers.IntegerField()),
        "currency": serializers.CharField(),
        "amount": MONEY,
        "amount_nano": serializers.IntegerField(),
        "current_period": inline_serializer(
            "BudgetPeriodState",
            {
                "start": serializers.DateTimeField(),
                "resets_at": serializers.DateTimeField(),
                "spent": MONEY,
                "spent_nano": serializers.IntegerField(),
                "held": MONEY,
                "held_nano": serializers.IntegerField(),
                "left": MONEY,
                "left_nano": serializers.IntegerField(),
                "percent_spent": serializers.IntegerField(),
            },
        ),
    },
)
LIST = inline_serializer("BudgetList", {"object": serializers.CharField(), "data": serializers.ListField(child=BUDGET)})


class BudgetsApiBase(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [ViewsOrganization]
    parser_classes = [SafeJSONParser]


class BudgetListApi(BudgetsApiBase):
    @extend_schema(
        operation_id="budgets_list", tags=["budgets"], summary="List the organization's budgets", responses={200: LIST}
    )
    def get(self, request: Request) -> Response:
        organization_id, currency = _organization(request)
        states = selectors.budget_list(organization_id=organization_id)
        return Response({"object": "list", "data": [budget_json(state, currency=currency) for state in states]})

    @extend_schema(
        operation_id="budgets_create",
        tags=["budgets"],
        summary="Create a budget for the organization, a workflow or an API key",
        request=CREATE,
        responses={201: BUDGET},
        examples=[
            OpenApiExample(
                "A hard daily budget for a workflow",
                request_only=True,
                value={
                    "scope": "workflow",
                    "workflow": "agents",
                    "amount": "5.00",
                    "period": "day",
                    "mode": "hard",
                    "thresholds": [50, 80, 100],
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        organization_id, currency = _organization(request)
        body = _body(request)
        scope = body.get("scope")
        _require_change(request, scope if isinstance(scope, str) else "")
        budget = services.budget_create(
            organization_id=organization_id,
            actor=request.user,
            scope=scope,
            workflow=body.get("workflow", ""),
            api_key_id=body.get("api_key_id"),
            amount_nano=_amount(body.get("amount")),
            period=body.get("period"),
            mode=body.get("mode", "alert"),
            thresholds=body.get("thresholds", [50, 80, 100]),
        )
        state = selectors.budget_get(organization_id=organization_id, budget_id=budget.pk)
        return Response(budget_json(state, currency=currency), status=status.HTTP_201_CREATED)


class BudgetDetailApi(BudgetsApiBase):
    @extend_schema(
        operation_id="budgets_retrieve",
        tags=["budgets"],
        summary="A budget and its current period",
        responses={200: BUDGET},
    )
    def get(self, request: Request, budget_id: str) -> Response:
        organization_id, currency = _organization(request)
        state = selectors.budget_get(organization_id=organization_id, budget_id=_budget_id(budget_id))
        return Response(budget_json(state, currency=currency))

    @extend_schema(
        operation_id="budgets_update",
        tags=["budgets"],
        summary="Change a budget's amount, period, mode and thresholds (all of them)",
        request=CHANGE,
        responses={200: BUDGET},
    )
    def put(self, request: Request, budget_id: str) -> Response:
        organization_id, currency = _organization(request)
        state = selectors.budget_get(organization_id=organization_id, budget_id=_budget_id(budget_id))
        _require_change(request, state.budget.scope)
        body = _body(request)
        services.budget_update(
            organization_id=organization_id,
            budget_id=state.budget.pk,
            actor=request.user,
            amount_nano=_amount(body.get("amount")),
            period=body.get("period"),
            mode=body.get("mode"),
            thresholds=body.get("thresholds"),
        )
        state = selectors.budget_get(organization_id=organization_id, budget_id=state.budget.pk)
        return Response(budget_json(state, currency=currency))

    @extend_schema(operation_id="budgets_destroy", tags=["budgets"], summary="Remove a budget", responses={204: None})
    def delete(self, request: Request, budget_id: str) -> Response:
        organization_id, _currency = _organization(request)
        state = selectors.budget_get(organization_id=organization_id, budget_id=_budget_id(budget_id))
        _require_change(request, state.budget.scope)
        services.budget_delete(organization_id=organization_id, budget_id=state.budget.pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
