"""What the staff credit endpoints share: money fields, the idempotency key, and output shapes.

Amounts travel as decimal strings in the currency's main unit ("12.50"); responses put the exact integer
`*_nano` beside each one. Floats are refused outright: 0.1 + 0.2 is not money.
"""

from typing import Any, Literal, overload

from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request

from billing.ledger.services.journal import MAX_KEY_LENGTH
from core.errors import ApplicationError
from core.money import AmountError, format_amount, parse_amount

AMOUNT_SCHEMA = {
    "type": "string",
    "pattern": r"^\d+(\.\d{1,9})?$",
    "example": "12.50",
    "description": "A decimal amount in the currency's main unit, at most 9 decimals.",
}


def idempotency_header(description: str) -> OpenApiParameter:
    """The Idempotency-Key header parameter (OpenAPI), described for an endpoint."""
    return OpenApiParameter(
        "Idempotency-Key", str, location=OpenApiParameter.HEADER, required=False, description=description
    )


IDEMPOTENCY_HEADER = idempotency_header(
    "Makes a retry safe: the same key returns the first result (200) instead of acting again. "
    "Required unless `idempotency_key` is in the body."
)


@extend_schema_field(AMOUNT_SCHEMA)
class AmountField(serializers.Field):
    """Input: a decimal string ("12.50") -> integer nano-units, with a message a person can act on."""

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, float):
            self.fail("invalid", message='must be a decimal string such as "12.50", not a JSON number with a fraction')
        if not isinstance(data, str | int) or isinstance(data, bool):
            self.fail("invalid", message='must be a decimal string such as "12.50"')
        try:
            return parse_amount(data, allow_zero=self.allow_zero)  # type: ignore[arg-type]
        except AmountError as error:
            self.fail("invalid", message=str(error))
        raise AssertionError("unreachable")  # self.fail raises

    def to_representation(self, value: int) -> str:
        return format_amount(value)


@extend_schema_field({"type": "string", "example": "12.50", "readOnly": True})
class NanoAmountField(serializers.Field):
    """Output: integer nano-units -> decimal string; finer amounts keep their digits rather than being rounded."""

    def __init__(self, **kwargs: Any):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: int) -> str:
        return format_amount(value)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of quietly turning them into text: a wrong type is a mistake."""

    default_error_messages = {"not_a_string": "must be a string"}

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class IdempotencyKeyField(StrictCharField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", MAX_KEY_LENGTH)
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Alternative to the Idempotency-Key header.")
        super().__init__(**kwargs)


def replay_status(created: bool) -> int:
    """201 when this request made it; 200 when its idempotency key made it before (the first result answers)."""
    return status.HTTP_201_CREATED if created else status.HTTP_200_OK


@overload
def idempotency_key_resolve(request: Request, body_key: str | None, *, required: Literal[True] = True) -> str: ...


@overload
def idempotency_key_resolve(request: Request, body_key: str | None, *, required: bool) -> str | None: ...


def idempotency_key_resolve(request: Request, body_key: str | None, *, required: bool = True) -> str | None:
    """The request's idempotency key, from the Idempotency-Key header or the body's idempotency_key; without
    one, None when it is not `required` (an error otherwise)."""
    header_key = request.headers.get("Idempotency-Key", "").strip() or None
    body_key = (body_key or "").strip() or None
    if header_key and body_key and header_key != body_key:
        raise ApplicationError(
            "the Idempotency-Key header and the idempotency_key field differ; send one of them",
            param="idempotency_key",
        )
    key = header_key or body_key
    if key is None and not required:
        return None
    if key is None:
        raise ApplicationError(
            "an idempotency key is required: send an Idempotency-Key header (or idempotency_key in the body) so a "
            "retried request can never move credit twice",
            param="idempotency_key",
            code="idempotency_key_required",
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ApplicationError(
            f"the idempotency key must be at most {MAX_KEY_LENGTH} characters", param="idempotency_key"
        )
    return key


class BalanceOutputSerializer(serializers.Serializer):
    organization_id = serializers.IntegerField()
    currency = serializers.CharField()
    available = NanoAmountField(source="available_nano")
    available_nano = serializers.IntegerField()
    held = NanoAmountField(source="held_nano")
    held_nano = serializers.IntegerField()
    overdraft_limit = NanoAmountField(source="overdraft_limit_nano")
    overdraft_limit_nano = serializers.IntegerField()
    spendable = NanoAmountField(source="spendable_nano", help_text="available + overdraft limit")
    spendable_nano = serializers.IntegerField()
    expiring_soon = NanoAmountField(source="expiring_soon_nano")
    expiring_soon_nano = serializers.IntegerField()
    expiring_within_days = serializers.IntegerField()
    next_expiry_at = serializers.DateTimeField(allow_null=True)


class GrantOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    amount = NanoAmountField(source="amount_nano")
    amount_nano = serializers.IntegerField()
    remaining = NanoAmountField(source="remaining_nano")
    remaining_nano = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)
    source_ref = serializers.CharField()
    transaction_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class EntryOutputSerializer(serializers.Serializer):
    account = serializers.CharField()
    amount = NanoAmountField(source="amount_nano")
    amount_nano = serializers.IntegerField()


class DrawOutputSerializer(serializers.Serializer):
    grant_id = serializers.IntegerField(allow_null=True, help_text="null: unfunded (overdraft) credit")
    amount = NanoAmountField(source="amount_nano")
    amount_nano = serializers.IntegerField()


class TransactionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    idempotency_key = serializers.CharField()
    actor = serializers.CharField()
    reason = serializers.CharField()
    category = serializers.CharField()
    hold_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    entries = EntryOutputSerializer(many=True, source="entries.all")
    draws = DrawOutputSerializer(many=True, source="draws.all")
