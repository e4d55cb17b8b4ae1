"""Staff endpoints for the ways of selling: plans, subscriptions, commitment offers and purchases, overrides."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Organization
from api.staff.pricing.common import (
    MAX_LIST,
    ScopeInput,
    ScopeOutput,
    StaffView,
    StrictSerializer,
    actor_email,
    get_or_404,
    scope_of,
)
from api.staff.pricing.fields import AmountField, PriceField
from billing.pricing import services
from billing.pricing.models import (
    Commitment,
    CommitmentOffer,
    Plan,
    PlanInterval,
    PriceOverride,
    Subscription,
)
from billing.pricing.services import AllowanceSpec

MAX_TOKENS = 10**14
MAX_INT = 2**31 - 1
ORGANIZATION = OpenApiParameter("organization", int, description="Only this organization's.")


def _organization(organization_id: int) -> int:
    get_or_404(Organization.objects, f"No organization {organization_id}.", "organization", pk=organization_id)
    return organization_id


def _by_organization(queryset: Any, request: Request) -> Any:
    raw = request.query_params.get("organization")
    if raw is None:
        return queryset
    if not raw.isdigit() or len(raw) > 18:
        raise serializers.ValidationError({"organization": ["A whole number, the organization's id."]})
    return queryset.filter(organization_id=int(raw))


# --- plans -----------------------------------------------------------------------------------------------------


class AllowanceInput(ScopeInput):
    included_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS)
    rollover_cap_tokens = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TOKENS, default=0)


class PlanPatchInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    interval = serializers.ChoiceField(PlanInterval.choices, required=False)
    fee = AmountField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    included_credit = AmountField(required=False)
    usage_discount_bps = serializers.IntegerField(required=False, min_value=0, max_value=10_000)
    requests_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)
    tokens_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)
    is_active = serializers.BooleanField(required=False)
    allowances = serializers.ListField(child=AllowanceInput(), required=False, max_length=100)


class PlanInput(PlanPatchInput):
    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    fee = AmountField()


class AllowanceOutput(serializers.Serializer):
    scope = serializers.SerializerMethodField()
    included_tokens = serializers.IntegerField()
    rollover_cap_tokens = serializers.IntegerField()

    @extend_schema_field(ScopeOutput)
    def get_scope(self, allowance: Any) -> dict[str, str | None]:
        return scope_of(allowance)


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
        plans = Plan.objects.prefetch_related("allowances__model")[:MAX_LIST]
        return Response({"data": PlanOutput(plans, many=True).data})

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
    organization = serializers.IntegerField(min_value=1, max_value=2**62)
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
        subscriptions = _by_organization(Subscription.objects.select_related("plan"), request)
        subscriptions = subscriptions.prefetch_related("periods__plan")[:MAX_LIST]
        return Response({"data": SubscriptionOutput(subscriptions, many=True).data})

    @extend_schema(
        request=SubscriptionInput,
        responses={201: SubscriptionOutput},
        summary="Subscribe an organization to a plan",
        description="The first fee is paid from the organization's credit at once (402 if it does not cover it).",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(SubscriptionInput, request)
        subscription = services.subscription_create(
            organization_id=_organization(data["organization"]), plan_slug=data["plan"], actor=request.user
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


# --- commitment offers and commitments ------------------------------------------------------------------------


class OfferPatchInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    committed_tokens_per_month = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS
    )
    reserved_tokens_per_minute = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS // 43_200
    )
    term_months = serializers.ChoiceField([1, 3, 12], required=False)
    discount_bps = serializers.IntegerField(required=False, min_value=0, max_value=9_999)
    payment = serializers.ChoiceField(["upfront", "monthly"], required=False)
    blended_price = PriceField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    is_active = serializers.BooleanField(required=False)


class OfferInput(OfferPatchInput, ScopeInput):
    name = serializers.CharField(max_length=200)
    term_months = serializers.ChoiceField([1, 3, 12])
    discount_bps = serializers.IntegerField(min_value=0, max_value=9_999)
    payment = serializers.ChoiceField(["upfront", "monthly"])
    blended_price = PriceField()


class OfferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.SerializerMethodField()
    committed_tokens_per_month = serializers.IntegerField(allow_null=True)
    reserved_tokens_per_minute = serializers.IntegerField(allow_null=True)
    monthly_tokens = serializers.IntegerField()
    term_months = serializers.IntegerField()
    discount_bps = serializers.IntegerField()
    payment = serializers.CharField()
    blended_price = PriceField(source="blended_price_micro_per_mtok")
    blended_price_micro_per_mtok = serializers.IntegerField()
    monthly_fee = serializers.SerializerMethodField()
    monthly_fee_nano = serializers.SerializerMethodField()
    currency = serializers.CharField()
    is_active = serializers.BooleanField()

    @extend_schema_field(ScopeOutput)
    def get_scope(self, offer: CommitmentOffer) -> dict[str, str | None]:
        return scope_of(offer)

    def _fee(self, offer: CommitmentOffer) -> int:
        return services.commitment_monthly_fee_nano(
            monthly_tokens=offer.monthly_tokens,
            blended_price_micro_per_mtok=offer.blended_price_micro_per_mtok,
            discount_bps=offer.discount_bps,
        )

    def get_monthly_fee(self, offer: CommitmentOffer) -> str:
        return AmountField().to_representation(self._fee(offer))

    def get_monthly_fee_nano(self, offer: CommitmentOffer) -> int:
        return self._fee(offer)


def _offer_terms(data: dict[str, Any]) -> dict[str, Any]:
    names = {"blended_price": "blended_price_micro_per_mtok"}
    return {names.get(k, k): v for k, v in data.items() if k not in ("model", "group")}


def _offer(offer_id: int) -> CommitmentOffer:
    return get_or_404(
        CommitmentOffer.objects.select_related("model"), f"No commitment offer {offer_id}.", "offer", pk=offer_id
    )


class OfferList(StaffView):
    @extend_schema(responses=OfferOutput(many=True), summary="List commitment offers")
    def get(self, request: Request) -> Response:
        offers = CommitmentOffer.objects.select_related("model")[:MAX_LIST]
        return Response({"data": OfferOutput(offers, many=True).data})

    @extend_schema(request=OfferInput, responses={201: OfferOutput}, summary="Define a commitment offer")
    def post(self, request: Request) -> Response:
        data = self.valid(OfferInput, request)
        offer = services.commitment_offer_create(
            model=data.get("model"), group=data.get("group"), actor=request.user, **_offer_terms(data)
        )
        return Response(OfferOutput(_offer(offer.pk)).data, status=status.HTTP_201_CREATED)


class OfferDetail(StaffView):
    @extend_schema(responses=OfferOutput, summary="A commitment offer")
    def get(self, request: Request, offer_id: int) -> Response:
        return Response(OfferOutput(_offer(offer_id)).data)

    @extend_schema(request=OfferPatchInput, responses=OfferOutput, summary="Edit an offer (future purchases only)")
    def patch(self, request: Request, offer_id: int) -> Response:
        data = self.valid(OfferPatchInput, request)
        services.commitment_offer_update(offer_id=offer_id, actor=request.user, **_offer_terms(data))
        return Response(OfferOutput(_offer(offer_id)).data)


class PurchaseInput(StrictSerializer):
    organization = serializers.IntegerField(min_value=1, max_value=2**62)
    offer = serializers.IntegerField(min_value=1, max_value=2**62)
    starts_at = serializers.DateTimeField(required=False)


class CommitmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.IntegerField(source="organization_id")
    offer = serializers.IntegerField(source="offer_id")
    scope = serializers.SerializerMethodField()
    monthly_tokens = serializers.IntegerField()
    reserved_tokens_per_minute = serializers.IntegerField()
    term_months = serializers.IntegerField()
    discount_bps = serializers.IntegerField()
    payment = serializers.CharField()
    monthly_fee = AmountField(source="monthly_fee_nano")
    monthly_fee_nano = serializers.IntegerField()
    total_fee = AmountField(source="total_fee_nano")
    total_fee_nano = serializers.IntegerField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    status = serializers.CharField()

    @extend_schema_field(ScopeOutput)
    def get_scope(self, commitment: Commitment) -> dict[str, str | None]:
        return scope_of(commitment)


class CommitmentList(StaffView):
    @extend_schema(parameters=[ORGANIZATION], responses=CommitmentOutput(many=True), summary="List commitments")
    def get(self, request: Request) -> Response:
        commitments = _by_organization(Commitment.objects.select_related("model"), request)[:MAX_LIST]
        return Response({"data": CommitmentOutput(commitments, many=True).data})

    @extend_schema(
        request=PurchaseInput,
        responses={201: CommitmentOutput},
        summary="Buy an offer for an organization",
        description="Pays the term (upfront) or the first month from credit at once (402 if it does not cover it).",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(PurchaseInput, request)
        commitment = services.commitment_purchase(
            organization_id=_organization(data["organization"]),
            offer_id=data["offer"],
            actor=request.user,
            starts_at=data.get("starts_at"),
        )
        return Response(CommitmentOutput(commitment).data, status=status.HTTP_201_CREATED)


class CommitmentDetail(StaffView):
    @extend_schema(responses=CommitmentOutput, summary="A commitment")
    def get(self, request: Request, commitment_id: int) -> Response:
        commitment = get_or_404(
            Commitment.objects.select_related("model"),
            f"No commitment {commitment_id}.",
            "commitment",
            pk=commitment_id,
        )
        return Response(CommitmentOutput(commitment).data)


# --- overrides -------------------------------------------------------------------------------------------------


class OverrideInput(ScopeInput):
    organization = serializers.IntegerField(min_value=1, max_value=2**62)
    discount_bps = serializers.IntegerField(required=False, min_value=0, max_value=10_000, default=0)
    input_price = PriceField(required=False)
    cached_input_price = PriceField(required=False)
    output_price = PriceField(required=False)
    effective_from = serializers.DateTimeField(required=False)
    effective_until = serializers.DateTimeField(required=False, allow_null=True)
    reason = serializers.CharField(max_length=500)


class OverrideEndInput(StrictSerializer):
    reason = serializers.CharField(max_length=500)
    at = serializers.DateTimeField(required=False)


class OverrideOutput(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.IntegerField(source="organization_id")
    scope = serializers.SerializerMethodField()
    discount_bps = serializers.IntegerField()
    input_price = PriceField(source="input_price_micro_per_mtok", allow_null=True)
    input_price_micro_per_mtok = serializers.IntegerField(allow_null=True)
    cached_input_price = PriceField(source="cached_input_price_micro_per_mtok", allow_null=True)
    cached_input_price_micro_per_mtok = serializers.IntegerField(allow_null=True)
    output_price = PriceField(source="output_price_micro_per_mtok", allow_null=True)
    output_price_micro_per_mtok = serializers.IntegerField(allow_null=True)
    effective_from = serializers.DateTimeField()
    effective_until = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(ScopeOutput)
    def get_scope(self, override: PriceOverride) -> dict[str, str | None]:
        return scope_of(override)

    def get_created_by(self, override: PriceOverride) -> str | None:
        return actor_email(override.created_by) if override.created_by_id else None


def _override(override_id: int) -> PriceOverride:
    return get_or_404(
        PriceOverride.objects.select_related("model", "created_by"),
        f"No override {override_id}.",
        "override",
        pk=override_id,
    )


class OverrideList(StaffView):
    @extend_schema(parameters=[ORGANIZATION], responses=OverrideOutput(many=True), summary="List negotiated prices")
    def get(self, request: Request) -> Response:
        overrides = _by_organization(PriceOverride.objects.select_related("model", "created_by"), request)
        return Response({"data": OverrideOutput(overrides[:MAX_LIST], many=True).data})

    @extend_schema(
        request=OverrideInput,
        responses={201: OverrideOutput},
        summary="Negotiate prices for an organization",
        description="Absolute prices (one model) and/or a discount (model or group), with a reason; audited.",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(OverrideInput, request)
        names = {
            "input_price": "input_price_micro_per_mtok",
            "cached_input_price": "cached_input_price_micro_per_mtok",
            "output_price": "output_price_micro_per_mtok",
        }
        override = services.override_create(
            organization_id=_organization(data.pop("organization")),
            actor=request.user,
            **{names.get(k, k): v for k, v in data.items()},
        )
        return Response(OverrideOutput(_override(override.pk)).data, status=status.HTTP_201_CREATED)


class OverrideDetail(StaffView):
    @extend_schema(responses=OverrideOutput, summary="A negotiated price")
    def get(self, request: Request, override_id: int) -> Response:
        return Response(OverrideOutput(_override(override_id)).data)


class OverrideEnd(StaffView):
    @extend_schema(request=OverrideEndInput, responses=OverrideOutput, summary="End a negotiated price")
    def post(self, request: Request, override_id: int) -> Response:
        data = self.valid(OverrideEndInput, request)
        services.override_end(override_id=override_id, actor=request.user, reason=data["reason"], at=data.get("at"))
        return Response(OverrideOutput(_override(override_id)).data)
