"""Staff endpoints for the catalogue: models, price versions (publish, schedule, edit, cancel), tier schedules."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.staff.pricing.common import (
    ScopeField,
    ScopeInput,
    StaffView,
    StrictSerializer,
    actor_email,
    get_or_404,
    listed,
)
from api.staff.pricing.fields import AmountField, PriceField, WholeNumberField
from billing.pricing import selectors, services
from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel, Encoding, ModelKind, ModelStatus, PriceVersion, TierSchedule

MAX_TOKENS = 10**9


# --- price versions ----------------------------------------------------------------------------------------------


class LongContextInput(StrictSerializer):
    threshold_tokens = WholeNumberField(min_value=1, max_value=MAX_TOKENS)
    input_price = PriceField()
    cached_input_price = PriceField()
    output_price = PriceField()


class PriceVersionPatchInput(StrictSerializer):
    input_price = PriceField(required=False)
    cached_input_price = PriceField(required=False)
    output_price = PriceField(required=False)
    # Reasoning tokens' price; null (or absent): the output price.
    reasoning_price = PriceField(required=False, allow_null=True)
    request_fee = AmountField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    priority_factor_bps = WholeNumberField(required=False, min_value=10_000, max_value=100_000)
    flex_factor_bps = WholeNumberField(required=False, min_value=0, max_value=10_000)
    batch_factor_bps = WholeNumberField(required=False, min_value=0, max_value=10_000)
    long_context = LongContextInput(required=False, allow_null=True)
    effective_from = serializers.DateTimeField(required=False)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class PriceVersionInput(PriceVersionPatchInput):
    model = serializers.CharField(max_length=200)
    input_price = PriceField()
    output_price = PriceField()


def price_values(data: dict[str, Any]) -> dict[str, Any]:
    """Request fields -> the service's keyword arguments."""
    names = {
        "input_price": "input_price_micro_per_mtok",
        "cached_input_price": "cached_input_price_micro_per_mtok",
        "output_price": "output_price_micro_per_mtok",
        "reasoning_price": "reasoning_price_micro_per_mtok",
        "request_fee": "request_fee_nano",
    }
    values = {names.get(key, key): value for key, value in data.items() if key not in ("long_context", "model")}
    if "long_context" in data:
        long = data["long_context"] or {}
        values |= {
            "long_context_threshold_tokens": long.get("threshold_tokens"),
            "long_input_price_micro_per_mtok": long.get("input_price"),
            "long_cached_input_price_micro_per_mtok": long.get("cached_input_price"),
            "long_output_price_micro_per_mtok": long.get("output_price"),
        }
    return values


class LongContextOutput(serializers.Serializer):
    threshold_tokens = serializers.IntegerField(source="long_context_threshold_tokens")
    input_price = PriceField(source="long_input_price_micro_per_mtok")
    input_price_micro_per_mtok = serializers.IntegerField(source="long_input_price_micro_per_mtok")
    cached_input_price = PriceField(source="long_cached_input_price_micro_per_mtok")
    cached_input_price_micro_per_mtok = serializers.IntegerField(source="long_cached_input_price_micro_per_mtok")
    output_price = PriceField(source="long_output_price_micro_per_mtok")
    output_price_micro_per_mtok = serializers.IntegerField(source="long_output_price_micro_per_mtok")


class PriceVersionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.slug")
    status = serializers.SerializerMethodField()
    input_price = PriceField(source="input_price_micro_per_mtok")
    input_price_micro_per_mtok = serializers.IntegerField()
    cached_input_price = PriceField(source="cached_input_price_micro_per_mtok")
    cached_input_price_micro_per_mtok = serializers.IntegerField()
    output_price = PriceField(source="output_price_micro_per_mtok")
    output_price_micro_per_mtok = serializers.IntegerField()
    reasoning_price = PriceField(source="reasoning_price_micro_per_mtok", allow_null=True)
    reasoning_price_micro_per_mtok = serializers.IntegerField(allow_null=True)
    request_fee = AmountField(source="request_fee_nano")
    request_fee_nano = serializers.IntegerField()
    currency = serializers.CharField()
    priority_factor_bps = serializers.IntegerField()
    flex_factor_bps = serializers.IntegerField()
    batch_factor_bps = serializers.IntegerField()
    long_context = serializers.SerializerMethodField()
    effective_from = serializers.DateTimeField()
    note = serializers.CharField()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    cancelled_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, version: PriceVersion) -> str:
        if version.cancelled_at:
            return "cancelled"
        return "scheduled" if version.effective_from > timezone.now() else "effective"

    def get_long_context(self, version: PriceVersion) -> dict[str, Any] | None:
        if version.long_context_threshold_tokens is None:
            return None
        return dict(LongContextOutput(version).data)

    def get_created_by(self, version: PriceVersion) -> str | None:
        return actor_email(version.created_by) if version.created_by_id else None


def _version(version_id: int) -> PriceVersion:
    version = PriceVersion.objects.select_related("model", "created_by").filter(pk=version_id).first()
    if version is None:
        raise ModelNotFound(f"No price version {version_id}.", param="price_version", code="not_found")
    return version


class PriceVersionList(StaffView):
    @extend_schema(
        parameters=[
            OpenApiParameter("model", str, description="Only this model's versions."),
            OpenApiParameter("status", str, enum=["scheduled", "effective", "cancelled"]),
        ],
        responses=PriceVersionOutput(many=True),
        summary="List price versions",
    )
    def get(self, request: Request) -> Response:
        versions = PriceVersion.objects.select_related("model", "created_by").order_by("model__slug", "-effective_from")
        if request.query_params.get("model"):
            versions = versions.filter(model__slug=request.query_params["model"])
        wanted = request.query_params.get("status")
        now = timezone.now()
        if wanted == "scheduled":
            versions = versions.filter(effective_from__gt=now, cancelled_at__isnull=True)
        elif wanted == "effective":
            versions = versions.filter(effective_from__lte=now, cancelled_at__isnull=True)
        elif wanted == "cancelled":
            versions = versions.filter(cancelled_at__isnull=False)
        elif wanted:
            raise serializers.ValidationError({"status": ["Use scheduled, effective or cancelled."]})
        return listed(PriceVersionOutput, versions)

    @extend_schema(
        request=PriceVersionInput,
        responses={201: PriceVersionOutput},
        summary="Publish or schedule a price version",
        description="Effective now when effective_from is left out; a later effective_from schedules it.",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(PriceVersionInput, request)
        version = services.price_version_create(model_slug=data["model"], actor=request.user, **price_values(data))
        return Response(PriceVersionOutput(_version(version.pk)).data, status=status.HTTP_201_CREATED)


class PriceVersionDetail(StaffView):
    @extend_schema(responses=PriceVersionOutput, summary="A price version")
    def get(self, request: Request, version_id: int) -> Response:
        return Response(PriceVersionOutput(_version(version_id)).data)

    @extend_schema(
        request=PriceVersionPatchInput, responses=PriceVersionOutput, summary="Edit a scheduled price version"
    )
    def patch(self, request: Request, version_id: int) -> Response:
        data = self.valid(PriceVersionPatchInput, request)
        services.price_version_update(price_version_id=version_id, actor=request.user, **price_values(data))
        return Response(PriceVersionOutput(_version(version_id)).data)


class ReasonInput(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class PriceVersionCancel(StaffView):
    @extend_schema(request=ReasonInput, responses=PriceVersionOutput, summary="Cancel a scheduled price version")
    def post(self, request: Request, version_id: int) -> Response:
        data = self.valid(ReasonInput, request)
        services.price_version_cancel(price_version_id=version_id, actor=request.user, reason=data.get("reason", ""))
        return Response(PriceVersionOutput(_version(version_id)).data)


# --- models ----------------------------------------------------------------------------------------------------


class ModelPatchInput(StrictSerializer):
    display_name = serializers.CharField(required=False, max_length=200)
    provider = serializers.CharField(required=False, allow_blank=True, max_length=100)
    group = serializers.CharField(required=False, allow_blank=True, max_length=100)
    encoding = serializers.ChoiceField(Encoding.choices, required=False)
    kind = serializers.ChoiceField(ModelKind.choices, required=False)
    context_window = WholeNumberField(required=False, min_value=1, max_value=2**31 - 1)
    default_max_tokens = WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)
    max_output_tokens = WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)
    status = serializers.ChoiceField(ModelStatus.choices, required=False)
    sunset_at = serializers.DateTimeField(required=False, allow_null=True)


class ModelInput(ModelPatchInput):
    slug = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$", max_length=200)
    display_name = serializers.CharField(max_length=200)
    encoding = serializers.ChoiceField(Encoding.choices)
    context_window = WholeNumberField(min_value=1, max_value=2**31 - 1)
    default_max_tokens = WholeNumberField(min_value=0, max_value=2**31 - 1)
    max_output_tokens = WholeNumberField(min_value=0, max_value=2**31 - 1)


class ModelOutput(serializers.Serializer):
    slug = serializers.CharField()
    display_name = serializers.CharField()
    provider = serializers.CharField()
    group = serializers.CharField()
    kind = serializers.CharField()
    encoding = serializers.CharField()
    context_window = serializers.IntegerField()
    default_max_tokens = serializers.IntegerField()
    max_output_tokens = serializers.IntegerField()
    status = serializers.CharField()
    sunset_at = serializers.DateTimeField(allow_null=True)
    current_price = serializers.SerializerMethodField()
    scheduled_prices = serializers.SerializerMethodField()

    def get_current_price(self, model: AIModel) -> dict[str, Any] | None:
        now = timezone.now()
        version = (
            model.price_versions.filter(effective_from__lte=now, cancelled_at__isnull=True)
            .select_related("model", "created_by")
            .order_by("-effective_from")
            .first()
        )
        return dict(PriceVersionOutput(version).data) if version else None

    def get_scheduled_prices(self, model: AIModel) -> list[dict[str, Any]]:
        versions = selectors.price_versions_scheduled(model_slug=model.slug, now=timezone.now())
        return [dict(item) for item in PriceVersionOutput(versions, many=True).data]


def _model(slug: str) -> AIModel:
    model = AIModel.objects.filter(slug=slug).first()
    if model is None:
        raise ModelNotFound(f"The model '{slug}' does not exist.", param="model")
    return model


class ModelList(StaffView):
    @extend_schema(responses=ModelOutput(many=True), summary="List models with current and scheduled prices")
    def get(self, request: Request) -> Response:
        return listed(ModelOutput, AIModel.objects.order_by("slug"))

    @extend_schema(request=ModelInput, responses={201: ModelOutput}, summary="Add a model to the catalogue")
    def post(self, request: Request) -> Response:
        data = self.valid(ModelInput, request)
        model = services.model_create(actor=request.user, **data)
        return Response(ModelOutput(model).data, status=status.HTTP_201_CREATED)


class ModelDetail(StaffView):
    @extend_schema(responses=ModelOutput, summary="A model")
    def get(self, request: Request, slug: str) -> Response:
        return Response(ModelOutput(_model(slug)).data)

    @extend_schema(request=ModelPatchInput, responses=ModelOutput, summary="Edit a model")
    def patch(self, request: Request, slug: str) -> Response:
        data = self.valid(ModelPatchInput, request)
        model = services.model_update(model_slug=slug, actor=request.user, **data)
        return Response(ModelOutput(model).data)


# --- tier schedules ------------------------------------------------------------------------------------------------


class TierInput(StrictSerializer):
    start = AmountField(help_text='Period volume (list-price spend) where the tier starts, e.g. "1000.00".')
    factor_bps = WholeNumberField(min_value=0, max_value=10_000)


class TierSchedulePatchInput(StrictSerializer):
    name = serializers.CharField(required=False, max_length=200)
    mode = serializers.ChoiceField(["graduated", "volume"], required=False)
    tiers = serializers.ListField(child=TierInput(), required=False, max_length=50)
    effective_from = serializers.DateTimeField(required=False)
    effective_until = serializers.DateTimeField(required=False, allow_null=True)


class TierScheduleInput(TierSchedulePatchInput, ScopeInput):
    name = serializers.CharField(max_length=200)
    mode = serializers.ChoiceField(["graduated", "volume"])
    tiers = serializers.ListField(child=TierInput(), max_length=50)
    effective_from = serializers.DateTimeField()


class TierOutput(serializers.Serializer):
    start = AmountField(source="start_nano")
    start_nano = serializers.IntegerField()
    factor_bps = serializers.IntegerField()


class TierScheduleOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = ScopeField()
    mode = serializers.CharField()
    tiers = TierOutput(source="bands", many=True)
    effective_from = serializers.DateTimeField()
    effective_until = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)


def _tiers(data: dict[str, Any]) -> list[tuple[int, int]] | None:
    if "tiers" not in data:
        return None
    return [(tier["start"], tier["factor_bps"]) for tier in data["tiers"]]


def _schedule(schedule_id: int) -> TierSchedule:
    return get_or_404(
        TierSchedule.objects.select_related("model").prefetch_related("bands"),
        f"No tier schedule {schedule_id}.",
        "tier_schedule",
        pk=schedule_id,
    )


class TierScheduleList(StaffView):
    @extend_schema(responses=TierScheduleOutput(many=True), summary="List volume-tier schedules")
    def get(self, request: Request) -> Response:
        return listed(TierScheduleOutput, TierSchedule.objects.select_related("model").prefetch_related("bands"))

    @extend_schema(
        request=TierScheduleInput,
        responses={201: TierScheduleOutput},
        summary="Schedule volume tiers for a model or group",
        description="Tiers start at 0, rise strictly, and their factors never rise. Starts at a coming month.",
    )
    def post(self, request: Request) -> Response:
        data = self.valid(TierScheduleInput, request)
        schedule = services.tier_schedule_create(
            name=data["name"],
            mode=data["mode"],
            tiers=_tiers(data) or [],
            effective_from=data["effective_from"],
            effective_until=data.get("effective_until"),
            model=data.get("model"),
            group=data.get("group"),
            actor=request.user,
        )
        return Response(TierScheduleOutput(_schedule(schedule.pk)).data, status=status.HTTP_201_CREATED)


class TierScheduleDetail(StaffView):
    @extend_schema(responses=TierScheduleOutput, summary="A tier schedule")
    def get(self, request: Request, schedule_id: int) -> Response:
        return Response(TierScheduleOutput(_schedule(schedule_id)).data)

    @extend_schema(request=TierSchedulePatchInput, responses=TierScheduleOutput, summary="Edit or end a schedule")
    def patch(self, request: Request, schedule_id: int) -> Response:
        data = self.valid(TierSchedulePatchInput, request)
        tiers = _tiers(data)
        data.pop("tiers", None)
        services.tier_schedule_update(schedule_id=schedule_id, actor=request.user, tiers=tiers, **data)
        return Response(TierScheduleOutput(_schedule(schedule_id)).data)


class TierScheduleCancel(StaffView):
    @extend_schema(request=None, responses=TierScheduleOutput, summary="Cancel a schedule before it starts")
    def post(self, request: Request, schedule_id: int) -> Response:
        services.tier_schedule_cancel(schedule_id=schedule_id, actor=request.user)
        return Response(TierScheduleOutput(_schedule(schedule_id)).data)
