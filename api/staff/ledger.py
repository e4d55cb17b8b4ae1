"""Staff: an organization's credit. Grant, reverse, set the overdraft policy; read the balance, grants and journal.

Each view validates with its InputSerializer, calls one ledger service or selector, and renders an output
serializer. Money moves only with an idempotency key, so a retried request never grants (or reverses) twice: the
replay answers 200 with the first result instead of 201.
"""

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from api.pagination import StrictCursorPagination
from api.staff.ledger_fields import (
    IDEMPOTENCY_HEADER,
    AmountField,
    BalanceOutputSerializer,
    GrantOutputSerializer,
    IdempotencyKeyField,
    StrictCharField,
    TransactionOutputSerializer,
    idempotency_key_resolve,
    replay_status,
)
from billing.ledger import selectors, services
from billing.ledger.errors import NotFound
from billing.ledger.models import Grant, GrantKind, JournalTransaction

TAG = "staff: credit"
# Kinds staff grant by hand; plan allowances come from plans, not from people.
STAFF_GRANT_KINDS = (GrantKind.PAID, GrantKind.PROMOTIONAL, GrantKind.REFUND)

ERRORS = {
    400: OpenApiResponse(description="Invalid input; `error.param` names the field."),
    404: OpenApiResponse(description="Unknown organization or grant."),
}


def organization_check(organization_id: int) -> None:
    if not Organization.objects.filter(pk=organization_id).exists():
        raise NotFound(f"organization {organization_id} not found", param="organization_id")


def grant_of(*, organization_id: int, grant_id: int) -> Grant:
    """A grant of this organization; another organization's grant is as unknown as a missing one."""
    organization_check(organization_id)
    grant = Grant.objects.filter(pk=grant_id, wallet__organization_id=organization_id).first()
    if grant is None:
        raise NotFound(f"grant {grant_id} not found for organization {organization_id}", param="grant_id")
    return grant


def staff_member(request: Request) -> User:
    """The staff member acting: IsAdminUser lets only an authenticated staff user through."""
    user = request.user
    assert isinstance(user, User)
    return user


def balance_data(organization_id: int) -> dict[str, Any]:
    return dict(BalanceOutputSerializer(selectors.wallet_balance(organization_id=organization_id)).data)


class CreditGrantOutputSerializer(serializers.Serializer):
    grant = GrantOutputSerializer()
    balance = BalanceOutputSerializer()


class ReversalOutputSerializer(serializers.Serializer):
    transaction = TransactionOutputSerializer()
    grant = GrantOutputSerializer()
    balance = BalanceOutputSerializer()


class BalanceApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG], operation_id="staff_balance_retrieve", responses={200: BalanceOutputSerializer, **ERRORS}
    )
    def get(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        return Response(balance_data(organization_id))


class CreditGrantCreateApi(APIView):
    """Add credit to the organization's wallet (what it owes from an overdraft is paid first)."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=[(kind.value, kind.label) for kind in STAFF_GRANT_KINDS])
        amount = AmountField()
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
        idempotency_key = IdempotencyKeyField()

        class Meta:
            ref_name = "StaffCreditGrantInput"

    @extend_schema(
        tags=[TAG],
        operation_id="staff_credit_grants_create",
        parameters=[IDEMPOTENCY_HEADER],
        request=InputSerializer,
        responses={
            201: CreditGrantOutputSerializer,
            200: OpenApiResponse(CreditGrantOutputSerializer, description="A replay: the first grant, unchanged."),
            409: OpenApiResponse(description="The idempotency key was used for a different grant."),
            **ERRORS,
        },
    )
    def post(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.grant_create(
            organization_id=organization_id,
            kind=data["kind"],
            amount_nano=data["amount"],
            idempotency_key=idempotency_key_resolve(request, data.get("idempotency_key")),
            actor=staff_member(request),
            expires_at=data["expires_at"],
            reason=data["reason"],
        )
        body = {"grant": GrantOutputSerializer(result.grant).data, "balance": balance_data(organization_id)}
        return Response(body, status=replay_status(result.created))


class GrantListApi(generics.ListAPIView):
    """The organization's grants, newest first, with what is left of each."""

    permission_classes = [IsAdminUser]
    serializer_class = GrantOutputSerializer

    def get_queryset(self) -> QuerySet[Grant]:
        organization_id = self.kwargs["organization_id"]
        organization_check(organization_id)
        wallet = selectors.wallet_of(organization_id=organization_id)
        return Grant.objects.none() if wallet is None else selectors.grants_list(wallet_id=wallet.pk)

    @extend_schema(tags=[TAG], operation_id="staff_grants_list")
    def get(self, request: Request, organization_id: int) -> Response:
        return super().get(request, organization_id)


class GrantReversalApi(APIView):
    """Take unused credit of one grant back (a correction, e.g. a grant made by mistake)."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        amount = AmountField()
        reason = StrictCharField(max_length=500)
        idempotency_key = IdempotencyKeyField()

        class Meta:
            ref_name = "StaffGrantReversalInput"

    @extend_schema(
        tags=[TAG],
        operation_id="staff_grant_reversals_create",
        parameters=[IDEMPOTENCY_HEADER],
        request=InputSerializer,
        responses={
            201: ReversalOutputSerializer,
            200: OpenApiResponse(ReversalOutputSerializer, description="A replay: the first reversal, unchanged."),
            409: OpenApiResponse(description="The idempotency key was used for a different reversal."),
            **ERRORS,
        },
    )
    def post(self, request: Request, organization_id: int, grant_id: int) -> Response:
        grant = grant_of(organization_id=organization_id, grant_id=grant_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = idempotency_key_resolve(request, data.get("idempotency_key"))
        # The ledger answers a replay with the first transaction, and says whether this call booked it: 201 or 200.
        result = services.grant_reverse(
            grant_id=grant.pk,
            amount_nano=data["amount"],
            idempotency_key=key,
            actor=staff_member(request),
            reason=data["reason"],
        )
        grant.refresh_from_db()
        body = {
            "transaction": TransactionOutputSerializer(result.transaction).data,
            "grant": GrantOutputSerializer(grant).data,
            "balance": balance_data(organization_id),
        }
        return Response(body, status=replay_status(result.created))


class OverdraftApi(APIView):
    """Set the overdraft policy: "0" stops at zero (the default); a positive limit lets available go below zero."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        overdraft_limit = AmountField(allow_zero=True)
        reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "StaffOverdraftInput"

    @extend_schema(
        tags=[TAG],
        operation_id="staff_overdraft_update",
        request=InputSerializer,
        responses={200: BalanceOutputSerializer, **ERRORS},
    )
    def put(self, request: Request, organization_id: int) -> Response:
        organization_check(organization_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.wallet_overdraft_set(
            organization_id=organization_id,
            overdraft_limit_nano=serializer.validated_data["overdraft_limit"],
            actor=staff_member(request),
            reason=serializer.validated_data["reason"],
        )
        return Response(balance_data(organization_id))


class JournalPagination(StrictCursorPagination):
    # A cursor, not an offset: the journal only grows, and deep pages stay one index range scan.
    page_size = 50


class JournalListApi(generics.ListAPIView):
    """The organization's journal, newest first: every movement of credit with its entries and grant draws."""

    permission_classes = [IsAdminUser]
    serializer_class = TransactionOutputSerializer
    pagination_class = JournalPagination

    def get_queryset(self) -> QuerySet[JournalTransaction]:
        organization_id = self.kwargs["organization_id"]
        organization_check(organization_id)
        wallet = selectors.wallet_of(organization_id=organization_id)
        return JournalTransaction.objects.none() if wallet is None else selectors.journal_list(wallet_id=wallet.pk)

    @extend_schema(tags=[TAG], operation_id="staff_journal_list")
    def get(self, request: Request, organization_id: int) -> Response:
        return super().get(request, organization_id)
