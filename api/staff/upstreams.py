"""Staff REST API: which OpenAI-compatible model server answers for each model (/api/staff/upstreams/).

The upstream's API key is write-only: responses say whether one is set (`api_key_set`), never what it is.
"""

from typing import Any

from django.urls import include, path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.viewsets import ViewSet

from accounts.ids import is_id_text
from api import services
from api.models import MAX_UPSTREAM_TIMEOUT_SECONDS, Upstream


class UpstreamOutput(serializers.ModelSerializer[Upstream]):
    model: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    api_key_set = serializers.SerializerMethodField()

    class Meta:
        model = Upstream
        fields = [
            "id",
            "model",
            "base_url",
            "api_key_set",
            "upstream_model",
            "timeout_seconds",
            "forwards_service_tier",
            "enabled",
            "created_at",
            "updated_at",
        ]

    def get_api_key_set(self, upstream: Upstream) -> bool:
        return bool(upstream.api_key)


class UpstreamInput(serializers.Serializer[Any]):
    model = serializers.CharField(max_length=200, help_text="The catalogue model id this server answers for.")
    base_url = serializers.CharField(max_length=500, help_text="OpenAI-compatible base URL, e.g. https://host/v1")
    api_key = serializers.CharField(
        max_length=500, required=False, allow_blank=True, write_only=True, help_text="Sent as a bearer token."
    )
    upstream_model = serializers.CharField(
        max_length=200, required=False, help_text="The model name the server knows (default: the model id)."
    )
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=MAX_UPSTREAM_TIMEOUT_SECONDS, required=False)
    forwards_service_tier = serializers.BooleanField(
        required=False, help_text="The server honours OpenAI's service_tier (OpenAI does): forward the client's tier."
    )
    enabled = serializers.BooleanField(required=False)


class UpstreamChange(serializers.Serializer[Any]):
    base_url = serializers.CharField(max_length=500, required=False)
    api_key = serializers.CharField(max_length=500, required=False, allow_blank=True, write_only=True)
    upstream_model = serializers.CharField(max_length=200, required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=MAX_UPSTREAM_TIMEOUT_SECONDS, required=False)
    forwards_service_tier = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


def _get(pk: str) -> Upstream:
    upstream = Upstream.objects.select_related("model").filter(pk=pk).first() if is_id_text(pk) else None
    if upstream is None:
        raise services.UpstreamNotFound("upstream not found", param="id")
    return upstream


_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The upstream's id.")


@extend_schema_view(
    retrieve=extend_schema(parameters=[_ID]),
    partial_update=extend_schema(parameters=[_ID]),
    destroy=extend_schema(parameters=[_ID]),
)
class UpstreamViewSet(ViewSet):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=UpstreamOutput(many=True))
    def list(self, request: Request) -> Response:
        upstreams = Upstream.objects.select_related("model").order_by("model__slug")
        return Response(UpstreamOutput(upstreams, many=True).data)

    @extend_schema(request=UpstreamInput, responses={201: UpstreamOutput})
    def create(self, request: Request) -> Response:
        data = UpstreamInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        upstream = services.upstream_create(model_slug=fields.pop("model"), actor=request.user, **fields)
        return Response(UpstreamOutput(upstream).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=UpstreamOutput)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(UpstreamOutput(_get(pk)).data)

    @extend_schema(request=UpstreamChange, responses=UpstreamOutput)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = UpstreamChange(data=request.data)
        data.is_valid(raise_exception=True)
        upstream = services.upstream_update(upstream_id=_get(pk).pk, actor=request.user, **data.validated_data)
        return Response(UpstreamOutput(upstream).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.upstream_delete(upstream_id=_get(pk).pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


router = SimpleRouter()
router.register("upstreams", UpstreamViewSet, basename="staff-upstream")

urlpatterns = [path("", include(router.urls))]
