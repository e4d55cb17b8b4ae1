"""Staff endpoints for per-organization price overrides (negotiated prices), with who set them and why."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.staff.pricing.common import (
    ORGANIZATION,
    ScopeField,
    ScopeInput,
    StaffView,
    StrictSerializer,
    actor_email,
    by_organization,
    get_or_404,
    listed,
    organization_check,
)
from api.staff.pricing.fields import PriceField, WholeNumberField
from billing.pricing import services
from billing.pricing.models import (
    PriceOverride,
)

# --- overrides -------------------------------------------------------------------------------------------------


class OverrideInput(ScopeInput):
    organization = WholeNumberField(min_value=1, max_value=2**62)
    discount_bps = WholeNumberField(required=False, min_value=0, max_value=10_000, default=0)
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
    scope = ScopeField()
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
        overrides = by_organization(PriceOverride.objects.select_related("model", "created_by"), request)
        return listed(OverrideOutput, overrides)

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
            organization_id=organization_check(data.pop("organization")),
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
