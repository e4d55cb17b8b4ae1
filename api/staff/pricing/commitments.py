"""Staff endpoints for reserved commitments: the offers staff define, and the purchases of organizations."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.staff.ledger_fields import IdempotencyKeyField, idempotency_header, idempotency_key_resolve, replay_status
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
from api.staff.pricing.fields import AmountField, PriceField, WholeNumberField
from billing.pricing import services
from billing.pricing.models import (
    Commitment,
    CommitmentOffer,
)

IDEMPOTENCY_HEADER_OPTIONAL = idempotency_header(
    "Makes a retry safe: the same key and request return the first purchase (200) instead of buying "
    "again; the same key with a different request is a 409. Or `idempotency_key` in the body."
)


# --- commitment offers and commitments ------------------------------------------------------------------------


class OfferPatchInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    committed_tokens_per_month = WholeNumberField(required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS)
    reserved_tokens_per_minute = WholeNumberField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS // 43_200
    )
    term_months = serializers.ChoiceField([1, 3, 12], required=False)
    discount_bps = WholeNumberField(required=False, min_value=0, max_value=9_999)
    payment = serializers.ChoiceField(["upfront", "monthly"], required=False)
    blended_price = PriceField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    is_active = serializers.BooleanField(required=False)


class OfferInput(OfferPatchInput, ScopeInput):
    name = serializers.CharField(max_length=200)
    term_months = serializers.ChoiceField([1, 3, 12])
    discount_bps = WholeNumberField(min_value=0, max_value=9_999)
    payment = serializers.ChoiceField(["upfront", "monthly"])
    blended_price = PriceField()


class OfferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = ScopeField()
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

    def get_monthly_fee(self, offer: CommitmentOffer) -> str:
        return AmountField().to_representation(services.offer_monthly_fee_nano(offer))

    def get_monthly_fee_nano(self, offer: CommitmentOffer) -> int:
        return services.offer_monthly_fee_nano(offer)


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
        return listed(OfferOutput, CommitmentOffer.objects.select_related("model"))

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
    organization = WholeNumberField(min_value=1, max_value=2**62)
    offer = WholeNumberField(min_value=1, max_value=2**62)
    starts_at = serializers.DateTimeField(required=False)
    idempotency_key = IdempotencyKeyField()


class CommitmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.IntegerField(source="organization_id")
    offer = serializers.IntegerField(source="offer_id")
    scope = ScopeField()
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


class CommitmentList(StaffView):
    @extend_schema(parameters=[ORGANIZATION], responses=CommitmentOutput(many=True), summary="List commitments")
    def get(self, request: Request) -> Response:
        return listed(CommitmentOutput, by_organization(Commitment.objects.select_related("model"), request))

    @extend_schema(
        parameters=[IDEMPOTENCY_HEADER_OPTIONAL],
        request=PurchaseInput,
        responses={
            201: CommitmentOutput,
            200: OpenApiResponse(CommitmentOutput, description="A replay: the first purchase, charged once."),
            409: OpenApiResponse(description="The idempotency key was used for a different purchase."),
        },
        summary="Buy an offer for an organization",
        description="Pays the term (upfront) or the first month from credit at once (402 if it does not cover it). "
        "With an Idempotency-Key, a retry returns the first purchase instead of buying again.",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(PurchaseInput, request)
        purchase = services.commitment_purchase_once(
            organization_id=organization_check(data["organization"]),
            offer_id=data["offer"],
            actor=request.user,
            starts_at=data.get("starts_at"),
            idempotency_key=idempotency_key_resolve(request, data.get("idempotency_key"), required=False),
        )
        return Response(CommitmentOutput(purchase.commitment).data, status=replay_status(purchase.created))


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
