"""Staff REST API of the payments area: refunds of unused paid credit, and the top-ups they apply to.

Staff only (is_staff). Amounts are decimal strings in the currency's main unit, with the exact `*_nano` beside
them in responses.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ids import is_id_text
from api.pagination import StrictLimitOffsetPagination, query_choice
from api.staff.ledger_fields import IDEMPOTENCY_HEADER, IdempotencyKeyField, idempotency_key_resolve
from billing.payments import selectors, services
from billing.payments.errors import NotFound
from billing.payments.models import Refund, StripeEvent, TopUp
from billing.payments.services.refunds import refund_refundable
from core.errors import ApplicationError
from core.money import format_amount


class StaffApi(APIView):
    permission_classes = [IsAdminUser]
    # The REST API's pagination (limit and offset checked, a 400 for a bad one); set on the view so the OpenAPI
    # schema documents its parameters and the paginated envelope.
    pagination_class = StrictLimitOffsetPagination

    def paginated(self, request: Request, rows: Any, serializer: type[serializers.Serializer]) -> Response:
        paginator = self.pagination_class()
        page: list[Any] | None = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(serializer(page, many=True).data)


def _query_id(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not is_id_text(raw):
        raise ApplicationError(f"{name} must be an integer id", param=name)
    return int(raw)


class IdField(serializers.IntegerField):
    """An id in a JSON body: a whole number, or its ASCII digits as a string (not "٣", which int() reads as 3)."""

    def __init__(self, **kwargs: Any):
        super().__init__(min_value=1, max_value=2**63 - 1, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and not is_id_text(data.strip()):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class RefundOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    top_up_id = serializers.IntegerField()
    organization_id = serializers.IntegerField(source="top_up.organization_id")
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    amount = serializers.SerializerMethodField()
    amount_nano = serializers.IntegerField()
    currency = serializers.CharField(source="top_up.currency")
    reason = serializers.CharField()
    error = serializers.CharField()
    stripe_refund_id = serializers.CharField(allow_null=True)
    payment_intent = serializers.CharField(source="top_up.stripe_payment_intent_id", allow_null=True)
    grant_id = serializers.IntegerField()
    ledger_transaction_id = serializers.IntegerField()
    restore_grant_id = serializers.IntegerField(allow_null=True)
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_amount(self, refund: Refund) -> str:
        return format_amount(refund.amount_nano)

    def get_created_by(self, refund: Refund) -> str | None:
        return refund.created_by.get_username() if refund.created_by else None


class TopUpOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    receipt_number = serializers.CharField()
    organization_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=TopUp.Kind.choices)
    status = serializers.ChoiceField(choices=TopUp.Status.choices)
    amount = serializers.SerializerMethodField()
    amount_nano = serializers.IntegerField()
    refunded = serializers.SerializerMethodField()
    refunded_nano = serializers.IntegerField()
    refundable = serializers.SerializerMethodField()
    refundable_nano = serializers.SerializerMethodField()
    currency = serializers.CharField()
    card_last4 = serializers.CharField()
    payment_intent = serializers.CharField(source="stripe_payment_intent_id", allow_null=True)
    grant_id = serializers.IntegerField(allow_null=True)
    failure_message = serializers.CharField()
    created_at = serializers.DateTimeField()
    succeeded_at = serializers.DateTimeField(allow_null=True)

    def get_amount(self, top_up: TopUp) -> str:
        return format_amount(top_up.amount_nano)

    def get_refunded(self, top_up: TopUp) -> str:
        return format_amount(top_up.refunded_nano)

    def get_refundable_nano(self, top_up: TopUp) -> int:
        return refund_refundable(top_up=top_up)[1]

    def get_refundable(self, top_up: TopUp) -> str:
        return format_amount(self.get_refundable_nano(top_up))


class RefundListCreateApi(StaffApi):
    class InputSerializer(serializers.Serializer):
        top_up_id = IdField()
        amount = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=32,
            help_text='Decimal string in the currency\'s main unit, e.g. "12.50". Omit to refund all that can be.',
        )
        reason = serializers.CharField(max_length=500, help_text="Why the money goes back (kept in the audit log).")
        idempotency_key = IdempotencyKeyField()

        class Meta:
            ref_name = "StaffRefundInput"

    @extend_schema(
        summary="List refunds",
        parameters=[
            OpenApiParameter("organization_id", int, description="Only this organization's refunds."),
            OpenApiParameter("top_up_id", int, description="Only refunds of this top-up."),
        ],
        responses=RefundOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        refunds = selectors.refunds_list(
            organization_id=_query_id(request, "organization_id"), top_up_id=_query_id(request, "top_up_id")
        )
        return self.paginated(request, refunds, RefundOutputSerializer)

    @extend_schema(
        summary="Refund unused paid credit to the card",
        description=(
            "Takes the credit out of the wallet first (a reversing ledger entry), then refunds through Stripe with "
            "an idempotency key. 201 with status `succeeded`; 202 with status `pending` when Stripe could not be "
            "reached (retried automatically, the credit stays out); 201 with status `failed` when Stripe refused "
            "(the credit is back in the wallet as a new grant, `error` says why). An Idempotency-Key header is "
            "required: a retry with the same key answers 200 with the first refund as it stands and refunds "
            "nothing more; the same key for another top-up or amount is refused with 409."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=InputSerializer,
        responses={
            201: RefundOutputSerializer,
            202: RefundOutputSerializer,
            200: OpenApiResponse(RefundOutputSerializer, description="A replay: the first refund, as it stands."),
            409: OpenApiResponse(description="The idempotency key was used for a different refund."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        result = services.refund_create(
            top_up_id=data["top_up_id"],
            amount=data.get("amount") or None,
            reason=data["reason"],
            actor=request.user,
            idempotency_key=idempotency_key_resolve(request, data.get("idempotency_key")),
        )
        refund = selectors.refunds_list().get(pk=result.refund.pk)
        code: int
        if not result.created:
            code = status.HTTP_200_OK
        elif refund.status == Refund.Status.PENDING:
            code = status.HTTP_202_ACCEPTED
        else:
            code = status.HTTP_201_CREATED
        return Response(RefundOutputSerializer(refund).data, status=code)


class RefundDetailApi(StaffApi):
    @extend_schema(
        summary="One refund",
        parameters=[OpenApiParameter("refund_id", int, OpenApiParameter.PATH)],
        responses=RefundOutputSerializer,
    )
    def get(self, request: Request, refund_id: str) -> Response:
        refund = None
        if is_id_text(refund_id):
            refund = selectors.refunds_list().filter(pk=int(refund_id)).first()
        if refund is None:
            raise NotFound("refund not found", param="refund_id")
        return Response(RefundOutputSerializer(refund).data)


class TopUpListApi(StaffApi):
    @extend_schema(
        summary="List card top-ups (with what can still be refunded)",
        parameters=[
            OpenApiParameter("organization_id", int, description="Only this organization's top-ups."),
            OpenApiParameter("status", str, enum=TopUp.Status.values, description="Only top-ups in this status."),
        ],
        responses=TopUpOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        wanted = query_choice(request, "status", TopUp.Status.values)
        top_ups = selectors.topups_for_staff(organization_id=_query_id(request, "organization_id"), status=wanted)
        return self.paginated(request, top_ups, TopUpOutputSerializer)


class StripeEventOutputSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    payment_intent_id = serializers.CharField()
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    processed_at = serializers.DateTimeField(allow_null=True)


class StripeEventListApi(StaffApi):
    @extend_schema(
        summary="List stored Stripe events (e.g. those waiting for a payment we have not seen, or failed)",
        parameters=[
            OpenApiParameter("status", str, enum=StripeEvent.Status.values, description="Only events in this status."),
            OpenApiParameter("payment_intent_id", str, description="Only events about this PaymentIntent."),
        ],
        responses=StripeEventOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        wanted = query_choice(request, "status", StripeEvent.Status.values)
        intent = request.query_params.get("payment_intent_id") or None
        if intent is not None and len(intent) > 255:
            raise ApplicationError("payment_intent_id is at most 255 characters", param="payment_intent_id")
        events = selectors.stripe_events_for_staff(status=wanted, payment_intent_id=intent)
        return self.paginated(request, events, StripeEventOutputSerializer)
