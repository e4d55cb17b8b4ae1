"""Staff: invoices (read-only; they are written only by the close) and how an organization is invoiced.

Amounts are decimal strings in the currency's main unit with the exact integer `*_nano` beside them; `total` is
the rounded amount due and `total_minor` the same in minor units (cents).
"""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import query_choice
from api.staff.ledger import organization_check, staff_member
from api.staff.ledger_fields import AmountField
from billing.invoicing import selectors, services
from billing.invoicing.models import NANO_PER_MINOR, CollectionMethod, Invoice, InvoiceStatus
from core.errors import ApplicationError
from core.money import format_amount

TAG = "staff: invoices"
ERRORS = {
    400: OpenApiResponse(description="Invalid input; `error.param` names the field."),
    404: OpenApiResponse(description="Unknown organization or invoice."),
}


class MoneyField(serializers.IntegerField):
    def to_representation(self, value: int) -> str:  # type: ignore[override]
        return format_amount(value)


class InvoiceLineOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    model = serializers.CharField(source="model.slug", allow_null=True, default=None)
    price_version_id = serializers.IntegerField(allow_null=True)
    token_kind = serializers.CharField()
    service_tier = serializers.CharField()
    paid_by = serializers.CharField(
        source="source",
        help_text="credit, quota or commitment; a grant kind on a credit line; invoice for a fee credit could not pay",
    )
    quantity = serializers.IntegerField()
    unit = serializers.CharField()
    rate_micro_per_mtok = serializers.IntegerField(allow_null=True)
    factor_bps = serializers.IntegerField(allow_null=True)
    discount_bps = serializers.IntegerField(allow_null=True)
    unit_price = MoneyField(source="unit_price_nano", allow_null=True)
    amount = MoneyField(source="amount_nano")
    amount_nano = serializers.IntegerField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    usage_ids = serializers.ListField(child=serializers.IntegerField())
    transaction_ids = serializers.ListField(child=serializers.IntegerField())
    draw_ids = serializers.ListField(child=serializers.IntegerField())
    fee = serializers.CharField(
        source="fee_ref",
        help_text="a fee credit could not pay (subscription_period:<id> or commitment_charge:<id>), paid with the "
        "invoice; empty otherwise",
    )

    class Meta:
        ref_name = "StaffInvoiceLine"


class InvoiceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    organization_id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    currency = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    charges = MoneyField(source="charges_nano")
    charges_nano = serializers.IntegerField()
    credit_applied = MoneyField(source="credit_applied_nano")
    credit_applied_nano = serializers.IntegerField()
    carry_in = MoneyField(source="carry_in_nano")
    carry_in_nano = serializers.IntegerField()
    total_exact = MoneyField(source="total_exact_nano")
    total_exact_nano = serializers.IntegerField()
    total = serializers.SerializerMethodField()
    total_minor = serializers.IntegerField()
    carry_out = MoneyField(source="carry_out_nano")
    carry_out_nano = serializers.IntegerField()
    collection_method = serializers.CharField()
    days_until_due = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    finalized_at = serializers.DateTimeField(allow_null=True)
    stripe_invoice_id = serializers.CharField()
    stripe_status = serializers.CharField()
    pushed_at = serializers.DateTimeField(allow_null=True)
    push_error = serializers.CharField()
    payment_attempts = serializers.IntegerField()
    payment_error = serializers.CharField()
    paid_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "StaffInvoice"

    def get_total(self, invoice: Invoice) -> str:
        return format_amount(invoice.total_minor * NANO_PER_MINOR)

    def to_representation(self, instance: Invoice) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["number"] = data["number"] or None
        return data


class InvoiceDetailOutputSerializer(InvoiceOutputSerializer):
    lines = serializers.SerializerMethodField()

    class Meta:
        ref_name = "StaffInvoiceDetail"

    def get_lines(self, invoice: Invoice) -> list[dict[str, Any]]:
        return InvoiceLineOutputSerializer(selectors.invoice_lines(invoice_id=invoice.pk), many=True).data  # type: ignore[return-value]


class InvoicePagination(CursorPagination):
    ordering = ("-period_start", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class InvoiceListApi(generics.ListAPIView):
    """Invoices, newest period first; filter with `organization` and `status`."""

    permission_classes = [IsAdminUser]
    serializer_class = InvoiceOutputSerializer
    pagination_class = InvoicePagination

    def get_queryset(self) -> QuerySet[Invoice]:
        raw_org = self.request.query_params.get("organization")
        status = query_choice(self.request, "status", InvoiceStatus.values)
        organization_id = None
        if raw_org is not None:
            if not raw_org.isascii() or not raw_org.isdigit() or len(raw_org) > 18:
                raise ApplicationError("organization must be an organization id", param="organization")
            organization_id = int(raw_org)
            organization_check(organization_id)
        return selectors.invoices_list(organization_id=organization_id, status=status)

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoices_list",
        parameters=[
            OpenApiParameter("organization", int, required=False, description="Only this organization's invoices."),
            OpenApiParameter("status", str, required=False, enum=InvoiceStatus.values),
        ],
        responses={200: InvoiceOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class InvoiceDetailApi(APIView):
    """One invoice with its lines; each line names what it sums (usage records, journal transactions, grant
    draws)."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG], operation_id="staff_invoice_get", responses={200: InvoiceDetailOutputSerializer, **ERRORS}
    )
    def get(self, request: Request, invoice_id: int) -> Response:
        invoice = selectors.invoice_get(invoice_id=invoice_id)
        return Response(InvoiceDetailOutputSerializer(invoice).data)


class BillingProfileApi(APIView):
    """How the organization is invoiced: the day its periods start (1..28), the collection method (the saved card,
    or an invoice sent with net terms) and the days to pay a sent invoice."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        anchor_day = serializers.IntegerField(min_value=1, max_value=28)
        collection_method = serializers.ChoiceField(choices=CollectionMethod.values)
        days_until_due = serializers.IntegerField(min_value=1, max_value=365, required=False, default=30)
        # Postpaid debt in a running period that triggers an invoice at once; null: the site's default.
        progressive_threshold = AmountField(required=False, allow_null=True, default=None)

        class Meta:
            ref_name = "StaffBillingProfileInput"

    class OutputSerializer(serializers.Serializer):
        organization_id = serializers.IntegerField()
        anchor_day = serializers.IntegerField()
        collection_method = serializers.CharField()
        days_until_due = serializers.IntegerField()
        progressive_threshold = MoneyField(source="progressive_threshold_nano", allow_null=True)

        class Meta:
            ref_name = "StaffBillingProfile"

    @extend_schema(tags=[TAG], operation_id="staff_billing_profile_get", responses={200: OutputSerializer, **ERRORS})
    def get(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        return Response(self.OutputSerializer(services.profile_get(organization_id=organization_id)).data)

    @extend_schema(
        tags=[TAG],
        operation_id="staff_billing_profile_update",
        request=InputSerializer,
        responses={200: OutputSerializer, **ERRORS},
    )
    def put(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        profile = services.billing_profile_set(
            organization_id=organization_id,
            anchor_day=data["anchor_day"],
            collection_method=data["collection_method"],
            days_until_due=data["days_until_due"],
            progressive_threshold_nano=data["progressive_threshold"],
            actor=staff_member(request),
        )
        return Response(self.OutputSerializer(profile).data)
