"""Staff: invoices and credit notes (an invoice is written only by the close; staff correct it with a credit note,
void it, mark it uncollectible, email it again or collect it now, each with a reason, in the audit log) and how an
organization is invoiced.

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

from accounts.ids import is_id_text
from api.pagination import query_choice
from api.staff.ledger import organization_check, staff_member
from api.staff.ledger_fields import (
    IDEMPOTENCY_HEADER,
    AmountField,
    IdempotencyKeyField,
    StrictCharField,
    idempotency_key_resolve,
    replay_status,
)
from billing.invoicing import selectors, services
from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import NANO_PER_MINOR, CollectionMethod, DocumentKind, Invoice, InvoiceStatus
from billing.invoicing.services import actions, credit_notes
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
    usage_ids = serializers.ListField(child=serializers.IntegerField(), source="traced_usage_ids")
    transaction_ids = serializers.ListField(child=serializers.IntegerField(), source="traced_transaction_ids")
    draw_ids = serializers.ListField(child=serializers.IntegerField(), source="traced_draw_ids")
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
    kind = serializers.CharField(help_text="invoice or credit_note")
    corrects_id = serializers.IntegerField(allow_null=True, help_text="A credit note's invoice.")
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
    billed_to = serializers.JSONField(
        help_text="The organization's billing details at finalization: legal_name, address {line1, line2, city, "
        "postal_code, region, country}, tax_id {type, value} or null, emails; {} when it had none or the invoice is "
        "not finalized yet."
    )
    voided_at = serializers.DateTimeField(allow_null=True)
    uncollectible_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField(help_text="A credit note's reason.")
    credit_grant_id = serializers.IntegerField(
        allow_null=True, help_text="The ledger grant by which a credit note gave its amount back."
    )
    stripe_credit_note_id = serializers.CharField()

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
    amount_due = serializers.SerializerMethodField()
    credit_notes = serializers.SerializerMethodField()

    class Meta:
        ref_name = "StaffInvoiceDetail"

    def get_amount_due(self, invoice: Invoice) -> str:
        """What the invoice still asks for: its total less its credit notes (zero once paid or void)."""
        return format_amount(selectors.amount_due_minor(invoice=invoice) * NANO_PER_MINOR)

    def get_credit_notes(self, invoice: Invoice) -> list[dict[str, Any]]:
        return [
            {"id": note.pk, "number": note.number, "total": format_amount(note.total_minor * NANO_PER_MINOR)}
            for note in selectors.credit_notes_of(invoice_id=invoice.pk)
        ]

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
            if not is_id_text(raw_org):
                raise ApplicationError("organization must be an organization id", param="organization")
            organization_id = int(raw_org)
            organization_check(organization_id)
        kind = query_choice(self.request, "kind", DocumentKind.values)
        return selectors.invoices_list(organization_id=organization_id, status=status, kind=kind)

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoices_list",
        parameters=[
            OpenApiParameter("organization", int, required=False, description="Only this organization's invoices."),
            OpenApiParameter("status", str, required=False, enum=InvoiceStatus.values),
            OpenApiParameter("kind", str, required=False, enum=DocumentKind.values),
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


ACTION_ERRORS = {
    **ERRORS,
    409: OpenApiResponse(description="The invoice's state does not allow it; `error.message` says why."),
    503: OpenApiResponse(description="Stripe did not answer; nothing was written; try again."),
}


class ReasonInputSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=credit_notes.REASON_MAX_LENGTH, help_text="Why (kept in the audit log).")

    class Meta:
        ref_name = "StaffInvoiceActionInput"


def _reason(request: Request) -> str:
    serializer = ReasonInputSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return str(serializer.validated_data["reason"])


def _credit_note_response(result: credit_notes.CreditNoteResult) -> Response:
    return Response(InvoiceDetailOutputSerializer(result.credit_note).data, status=replay_status(result.created))


class CreditNoteLineInputSerializer(serializers.Serializer):
    position = serializers.IntegerField(min_value=1, max_value=1_000_000, help_text="The invoice line's position.")
    amount = AmountField(required=False, help_text="Part of the line to credit; all that is left of it if omitted.")

    class Meta:
        ref_name = "StaffCreditNoteLineInput"


class CreditNoteCreateApi(APIView):
    """Issue a credit note for chosen charge lines of a finalized, paid or uncollectible invoice, each in full or in
    part. The amount goes back to the customer as refund credit in the ledger (on an unpaid invoice it repays what
    the invoice billed, and Stripe's invoice is lowered by a Stripe credit note)."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        lines = CreditNoteLineInputSerializer(many=True, allow_empty=False)
        reason = StrictCharField(max_length=credit_notes.REASON_MAX_LENGTH)
        idempotency_key = IdempotencyKeyField()

        class Meta:
            ref_name = "StaffCreditNoteInput"

    @extend_schema(
        tags=[TAG],
        operation_id="staff_credit_notes_create",
        parameters=[IDEMPOTENCY_HEADER],
        request=InputSerializer,
        responses={
            201: InvoiceDetailOutputSerializer,
            200: OpenApiResponse(InvoiceDetailOutputSerializer, description="A replay: the first credit note."),
            **ACTION_ERRORS,
        },
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = credit_notes.credit_note_issue(
            invoice_id=invoice_id,
            lines=[credit_notes.LineCredit(line["position"], line.get("amount")) for line in data["lines"]],
            reason=data["reason"],
            idempotency_key=idempotency_key_resolve(request, data.get("idempotency_key")),
            actor=staff_member(request),
        )
        return _credit_note_response(result)


class InvoiceVoidApi(APIView):
    """Void a finalized or uncollectible invoice: voided at Stripe first, then a credit note of all its lines (what
    earlier credit notes left of them). Repeating it returns the same credit note (200)."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoice_void",
        request=ReasonInputSerializer,
        responses={
            201: InvoiceDetailOutputSerializer,
            200: OpenApiResponse(InvoiceDetailOutputSerializer, description="Already void: its credit note."),
            **ACTION_ERRORS,
        },
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        reason = _reason(request)
        result = credit_notes.invoice_void(invoice_id=invoice_id, reason=reason, actor=staff_member(request))
        return _credit_note_response(result)


class InvoiceUncollectibleApi(APIView):
    """Mark a finalized invoice uncollectible (at Stripe first); payment retries stop. Idempotent."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoice_mark_uncollectible",
        request=ReasonInputSerializer,
        responses={200: InvoiceDetailOutputSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        reason = _reason(request)
        invoice = actions.invoice_mark_uncollectible(invoice_id=invoice_id, reason=reason, actor=staff_member(request))
        return Response(InvoiceDetailOutputSerializer(invoice).data)


class InvoiceResendApi(APIView):
    """Email a finalized invoice again to the organization's owners and billing admins."""

    permission_classes = [IsAdminUser]

    class OutputSerializer(serializers.Serializer):
        recipients = serializers.ListField(child=serializers.CharField())

        class Meta:
            ref_name = "StaffInvoiceResend"

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoice_resend",
        request=ReasonInputSerializer,
        responses={200: OutputSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        reason = _reason(request)
        recipients = actions.invoice_resend(invoice_id=invoice_id, reason=reason, actor=staff_member(request))
        return Response({"recipients": recipients})


class InvoiceCollectApi(APIView):
    """Collect a finalized invoice now: push it to Stripe if it is not there yet, else charge the saved card again.
    A decline is not an error: the answer shows `payment_error`."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG],
        operation_id="staff_invoice_collect",
        request=ReasonInputSerializer,
        responses={200: InvoiceDetailOutputSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        reason = _reason(request)
        invoice = actions.invoice_collect_now(invoice_id=invoice_id, reason=reason, actor=staff_member(request))
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


class BillingDetailsApi(APIView):
    """Who the organization's invoices are addressed to, as its owners and billing admins set them on
    /billing/details/ (read-only here); 404 when they never set any. Each invoice keeps its own copy in
    `billed_to`."""

    permission_classes = [IsAdminUser]

    class OutputSerializer(serializers.Serializer):
        organization_id = serializers.IntegerField()
        legal_name = serializers.CharField()
        address_line1 = serializers.CharField()
        address_line2 = serializers.CharField()
        city = serializers.CharField()
        postal_code = serializers.CharField()
        region = serializers.CharField()
        country = serializers.CharField(help_text="ISO 3166-1 alpha-2")
        tax_id_type = serializers.CharField(help_text="Stripe's tax ID type; empty without a tax ID")
        tax_id_value = serializers.CharField()
        emails = serializers.ListField(child=serializers.EmailField())
        version = serializers.IntegerField()
        stripe_synced_version = serializers.IntegerField(help_text="the version last sent to the Stripe customer")
        stripe_sync_error = serializers.CharField()
        updated_at = serializers.DateTimeField()

        class Meta:
            ref_name = "StaffBillingDetails"

    @extend_schema(tags=[TAG], operation_id="staff_billing_details_get", responses={200: OutputSerializer, **ERRORS})
    def get(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        details = selectors.billing_details_get(organization_id=organization_id)
        if details is None:
            raise InvoiceNotFound(f"organization {organization_id} has no billing details", param="organization_id")
        return Response(self.OutputSerializer(details).data)
