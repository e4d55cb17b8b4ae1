"""Staff endpoints for plans (subscriptions with included tokens or credit) and organizations' subscriptions."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.staff.pricing.common import (
    MAX_TOKENS,
    ORGANIZATION,
    ScopeField,
    ScopeInput,
    StaffView,
    StrictSerializer,
    by_organization,
    get_or_404,
    listed,
    organization_check,
)
from api.staff.pricing.fields import AmountField, WholeNumberField
from billing.pricing import services
from billing.pricing.models import (
    Plan,
    PlanInterval,
    Subscription,
)
from billing.pricing.services import AllowanceSpec

MAX_INT = 2**31 - 1

# --- plans -----------------------------------------------------------------------------------------------------


class AllowanceInput(ScopeInput):
    included_tokens = WholeNumberField(min_value=1, max_value=MAX_TOKENS)
    rollover_cap_tokens = WholeNumberField(required=False, min_value=0, max_value=MAX_TOKENS, default=0)


class PlanPatchInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    interval = serializers.ChoiceField(PlanInterval.choices, required=False)
    fee = AmountField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    included_credit = AmountField(required=False)
    usage_discount_bps = WholeNumberField(required=False, min_value=0, max_value=10_000)
    requests_per_minute = WholeNumberField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)
    tokens_per_minute = WholeNumberField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)
    is_active = serializers.BooleanField(required=False)
    allowances = serializers.ListField(child=AllowanceInput(), required=False, max_length=100)


class PlanInput(PlanPatchInput):
    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    fee = AmountField()


class AllowanceOutput(serializers.Serializer):
    scope = ScopeField()
    included_tokens = serializers.IntegerField()
    rollover_cap_tokens = serializers.IntegerField()


class PlanOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    interval = serializers.CharField()
    fee = AmountField(source="fee_nano")
    fee_nano = serializers.IntegerField()
    currency = serializers.CharField()
    included_credit = AmountField(source="included_credit_nano")
    included_credit_nano = serializers.IntegerField()
    usage_discount_bps = serializers.IntegerField()
    requests_per_minute = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)
    is_active = serializers.BooleanField()
    allowances = AllowanceOutput(many=True, source="allowances.all")
    created_at = serializers.DateTimeField()


def _plan_terms(data: dict[str, Any]) -> tuple[dict[str, Any], list[AllowanceSpec] | None]:
    names = {"fee": "fee_nano", "included_credit": "included_credit_nano"}
    allowances = None
    if "allowances" in data:
        allowances = [
            AllowanceSpec(
                included_tokens=a["included_tokens"],
                rollover_cap_tokens=a.get("rollover_cap_tokens", 0),
                model=a.get("model"),
                group=a.get("group"),
            )
            for a in data["allowances"]
        ]
    terms = {names.get(k, k): v for k, v in data.items() if k not in ("allowances", "slug")}
    return terms, allowances


def _plan(slug: str) -> Plan:
    return get_or_404(
        Plan.objects.prefetch_related("allowances__model"), f"The plan '{slug}' does not exist.", "plan", slug=slug
    )


class PlanList(StaffView):
    @extend_schema(responses=PlanOutput(many=True), summary="List plans")
    def get(self, request: Request) -> Response:
        return listed(PlanOutput, Plan.objects.prefetch_related("allowances__model"))

    @extend_schema(request=PlanInput, responses={201: PlanOutput}, summary="Create a plan")
    def post(self, request: Request) -> Response:
        data = self.valid(PlanInput, request)
        terms, allowances = _plan_terms(data)
        plan = services.plan_create(slug=data["slug"], allowances=allowances, actor=request.user, **terms)
        return Response(PlanOutput(_plan(plan.slug)).data, status=status.HTTP_201_CREATED)


class PlanDetail(StaffView):
    @extend_schema(responses=PlanOutput, summary="A plan")
    def get(self, request: Request, slug: str) -> Response:
        return Response(PlanOutput(_plan(slug)).data)

    @extend_schema(
        request=PlanPatchInput,
        responses=PlanOutput,
        summary="Edit a plan",
        description="A plan with subscribers keeps its money terms and included tokens (409); make a new plan.",
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = self.valid(PlanPatchInput, request)
        terms, allowances = _plan_terms(data)
        services.plan_update(plan_slug=slug, allowances=allowances, actor=request.user, **terms)
        return Response(PlanOutput(_plan(slug)).data)


# --- subscriptions ---------------------------------------------------------------------------------------------


class SubscriptionInput(StrictSerializer):
    organization = WholeNumberField(min_value=1, max_value=2**62)
    plan = serializers.SlugField(max_length=100)


class PlanChoiceInput(StrictSerializer):
    plan = serializers.SlugField(max_length=100)


class PeriodOutput(serializers.Serializer):
    kind = serializers.CharField()
    plan = serializers.CharField(source="plan.slug")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    starts_at = serializers.DateTimeField()
    plan_fee = AmountField(source="plan_fee_nano")
    plan_fee_nano = serializers.IntegerField()
    fee = AmountField(source="fee_nano")
    fee_nano = serializers.IntegerField()
    credit = AmountField(source="credit_nano")
    credit_nano = serializers.IntegerField()
    superseded_at = serializers.DateTimeField(allow_null=True)


class SubscriptionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.IntegerField(source="organization_id")
    plan = serializers.CharField(source="plan.slug")
    status = serializers.CharField()
    current_period_start = serializers.DateTimeField()
    current_period_end = serializers.DateTimeField()
    cancel_at_period_end = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    periods = PeriodOutput(many=True, source="periods.all")


def _subscription(subscription_id: int) -> Subscription:
    return get_or_404(
        Subscription.objects.select_related("plan").prefetch_related("periods__plan"),
        f"No subscription {subscription_id}.",
        "subscription",
        pk=subscription_id,
    )


class SubscriptionList(StaffView):
    @extend_schema(parameters=[ORGANIZATION], responses=SubscriptionOutput(many=True), summary="List subscriptions")
    def get(self, request: Request) -> Response:
        subscriptions = by_organization(Subscription.objects.select_related("plan"), request)
        return listed(SubscriptionOutput, subscriptions.prefetch_related("periods__plan"))

    @extend_schema(
        request=SubscriptionInput,
        responses={201: SubscriptionOutput},
        summary="Subscribe an organization to a plan",
        description="The first fee is paid from the organization's credit at once (402 if it does not cover it).",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(SubscriptionInput, request)
        subscription = services.subscription_create(
            organization_id=organization_check(data["organization"]), plan_slug=data["plan"], actor=request.user
        )
        return Response(SubscriptionOutput(_subscription(subscription.pk)).data, status=status.HTTP_201_CREATED)


class SubscriptionDetail(StaffView):
    @extend_schema(responses=SubscriptionOutput, summary="A subscription with its periods and fees")
    def get(self, request: Request, subscription_id: int) -> Response:
        return Response(SubscriptionOutput(_subscription(subscription_id)).data)


class SubscriptionChange(StaffView):
    @extend_schema(
        request=PlanChoiceInput,
        responses=SubscriptionOutput,
        summary="Change plan now, prorated",
        description="The unused part of the old fee is credited, the new fee for the rest of the period charged.",
    )
    def post(self, request: Request, subscription_id: int) -> Response:
        data = self.valid(PlanChoiceInput, request)
        services.subscription_change(subscription_id=subscription_id, plan_slug=data["plan"], actor=request.user)
        return Response(SubscriptionOutput(_subscription(subscription_id)).data)


class RequiredReasonInput(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class SubscriptionCancel(StaffView):
    @extend_schema(request=RequiredReasonInput, responses=SubscriptionOutput, summary="Cancel at period end")
    def post(self, request: Request, subscription_id: int) -> Response:
        data = self.valid(RequiredReasonInput, request)
        services.subscription_cancel(subscription_id=subscription_id, actor=request.user, reason=data["reason"])
        return Response(SubscriptionOutput(_subscription(subscription_id)).data)
