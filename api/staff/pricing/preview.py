"""Staff endpoints: preview what usage would cost an organization (now, and under a draft price), and the audit
log of pricing changes."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import AuditEvent
from api.pagination import query_whole_number
from api.staff.pricing.catalog import PriceVersionPatchInput, price_values
from api.staff.pricing.common import MAX_LIST, StaffView, StrictSerializer, by_organization, listed, organization_check
from api.staff.pricing.fields import AmountField, WholeNumberField
from billing.pricing import rating, services
from billing.pricing.units import price_format
from core.money import format_amount

MAX_TOKENS = 10**10


class UsageInput(StrictSerializer):
    input_tokens = WholeNumberField(min_value=0, max_value=MAX_TOKENS)
    cached_input_tokens = WholeNumberField(required=False, min_value=0, max_value=MAX_TOKENS, default=0)
    output_tokens = WholeNumberField(required=False, min_value=0, max_value=MAX_TOKENS, default=0)
    service_tier = serializers.ChoiceField(list(rating.SERVICE_TIERS), required=False, default="default")
    requests = WholeNumberField(required=False, min_value=0, max_value=10**6, default=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["cached_input_tokens"] > attrs["input_tokens"]:
            raise serializers.ValidationError(
                {"cached_input_tokens": ["Cached input tokens are part of input_tokens."]}
            )
        return attrs


class WindowInput(StrictSerializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()


class DraftInput(PriceVersionPatchInput):
    """Unsaved prices to compare with: any field left out keeps the current version's."""

    effective_from = None  # type: ignore[assignment]
    note = None  # type: ignore[assignment]


class PreviewInput(StrictSerializer):
    organization = WholeNumberField(min_value=1, max_value=2**62)
    model = serializers.CharField(max_length=200)
    at = serializers.DateTimeField(required=False, help_text="When the usage happens (default: now).")
    usages = serializers.ListField(child=UsageInput(), required=False, max_length=services.preview.MAX_USAGES)
    window = WindowInput(required=False, help_text="Re-rate the organization's recorded usage of the model.")
    draft = DraftInput(required=False)
    price_version = WholeNumberField(required=False, min_value=1, max_value=2**62)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("usages" in attrs) == ("window" in attrs):
            raise serializers.ValidationError({"usages": ["Give either usages or a window of recorded usage."]})
        return attrs


class PreviewOutput(serializers.Serializer):
    organization = serializers.IntegerField()
    model = serializers.CharField()
    at = serializers.DateTimeField()
    current = serializers.DictField()
    draft = serializers.DictField(allow_null=True)
    current_total = AmountField()
    current_total_nano = serializers.IntegerField()
    draft_total = AmountField(allow_null=True)
    draft_total_nano = serializers.IntegerField(allow_null=True)
    difference_nano = serializers.IntegerField(allow_null=True)
    recorded_total = AmountField(allow_null=True)
    recorded_total_nano = serializers.IntegerField(allow_null=True)
    usages = serializers.ListField(child=serializers.DictField())


def _context(context: rating.PricingContext | None) -> dict[str, Any] | None:
    if context is None:
        return None
    p = context.prices
    return {
        "price_version_id": p.price_version_id,
        "override_id": p.override_id,
        "input_price": price_format(p.input_price_micro_per_mtok),
        "cached_input_price": price_format(p.cached_input_price_micro_per_mtok),
        "output_price": price_format(p.output_price_micro_per_mtok),
        "subscription_id": context.subscription_id,
        "plan_discount_bps": context.plan_discount_bps,
        "allowances": [
            {"source": a.source, "ref": a.ref, "scope": a.scope_key, "limit_tokens": a.limit_tokens}
            for a in context.allowances
        ],
        "tier_schedule_id": context.tier.schedule_id if context.tier else None,
    }


def _rated(rated: rating.Rating | None) -> dict[str, Any] | None:
    if rated is None:
        return None
    return {
        "credit": format_amount(rated.credit_nano),
        "credit_nano": rated.credit_nano,
        "quota_tokens": rated.quota_tokens,
        "commitment_tokens": rated.commitment_tokens,
        "lines": [line.as_dict() for line in rated.lines],
    }


class Preview(StaffView):
    @extend_schema(
        request=PreviewInput,
        responses=PreviewOutput,
        summary="Price hypothetical usage for an organization, now and under a draft price",
        description=(
            "Rates the usages (or the organization's recorded usage in a window) with the organization's real "
            "context: override, plan quota and discount, commitments, tiers, from its current period counters, "
            "claiming nothing. `draft` gives unsaved prices; `price_version` a scheduled version. Nothing is written."
        ),
    )
    def post(self, request: Request) -> Response:
        data = self.valid(PreviewInput, request)
        organization_id = organization_check(data["organization"])
        recorded = None
        if "window" in data:
            usages, recorded = services.window_usages(
                organization_id=organization_id,
                model_slug=data["model"],
                since=data["window"]["since"],
                until=data["window"]["until"],
            )
        else:
            usages = [rating.Usage(model_slug=data["model"], **usage) for usage in data["usages"]]
        draft = price_values(data["draft"]) if "draft" in data else None
        result = services.pricing_preview(
            organization_id=organization_id,
            model_slug=data["model"],
            usages=usages,
            at=data.get("at"),
            draft=draft,
            price_version_id=data.get("price_version"),
            recorded_total_nano=recorded,
        )
        difference = None if result.draft_total_nano is None else result.draft_total_nano - result.current_total_nano
        body = {
            "organization": organization_id,
            "model": result.model_slug,
            "at": result.at,
            "current": _context(result.current),
            "draft": _context(result.draft),
            "current_total": result.current_total_nano,
            "current_total_nano": result.current_total_nano,
            "draft_total": result.draft_total_nano,
            "draft_total_nano": result.draft_total_nano,
            "difference_nano": difference,
            "recorded_total": recorded,
            "recorded_total_nano": recorded,
            "usages": [
                {
                    "input_tokens": row.usage.input_tokens,
                    "cached_input_tokens": row.usage.cached_input_tokens,
                    "output_tokens": row.usage.output_tokens,
                    "service_tier": row.usage.service_tier,
                    "current": _rated(row.current),
                    "draft": _rated(row.draft),
                }
                for row in result.rows[:100]
            ],
        }
        return Response(PreviewOutput(body).data)


class AuditOutput(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField()
    organization = serializers.IntegerField(source="organization_id", allow_null=True)
    target = serializers.CharField()
    reason = serializers.CharField()
    detail = serializers.DictField()


class AuditLog(StaffView):
    @extend_schema(
        parameters=[
            OpenApiParameter("organization", int),
            OpenApiParameter(
                "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST}, description="Default 100."
            ),
        ],
        responses=AuditOutput(many=True),
        summary="The audit log of pricing changes, newest first",
    )
    def get(self, request: Request) -> Response:
        events = by_organization(AuditEvent.objects.filter(action__startswith="pricing."), request)
        events = events.order_by("-created_at", "-id")
        limit = query_whole_number(request, "limit", default=100, minimum=1, maximum=MAX_LIST)
        return listed(AuditOutput, events, limit=limit)
