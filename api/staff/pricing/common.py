"""What every staff pricing endpoint shares: staff-only access, strict input, and the list shape."""

from typing import Any

from django.db.models import Model
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ids import is_id_text
from accounts.models import Organization
from billing.pricing.errors import PricingNotFound

MAX_LIST = 500
MAX_TOKENS = 10**14  # the most tokens any quantity of a plan or an offer can name


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a misspelt field is an error rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class ScopeInput(StrictSerializer):
    """Exactly one of `model` (a model id) and `group` (a model group)."""

    model = serializers.CharField(required=False, allow_null=True, max_length=200)
    group = serializers.CharField(required=False, allow_null=True, max_length=100)


class StaffView(APIView):
    """Staff only: anyone else gets 403."""

    permission_classes = [IsAdminUser]

    def valid(self, serializer_class: type[serializers.Serializer], request: Request, **options: Any) -> dict[str, Any]:
        serializer = serializer_class(data=request.data, **options)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def listed(serializer_class: type[serializers.Serializer], rows: Any, *, limit: int = MAX_LIST) -> Response:
    """The list shape: `{"data": [...]}`, of at most `limit` rows."""
    return Response({"data": serializer_class(rows[:limit], many=True).data})


def get_or_404(queryset: Any, message: str, param: str, **lookup: Any) -> Any:
    found: Model | None = queryset.filter(**lookup).first()
    if found is None:
        raise PricingNotFound(message, param=param)
    return found


def actor_email(user: Any) -> str | None:
    return getattr(user, "email", None) or (user.get_username() if user is not None else None)


def scope_of(instance: Any) -> dict[str, str | None]:
    return {"model": instance.model.slug if instance.model_id else None, "group": instance.group or None}


class ScopeOutput(serializers.Serializer):
    model = serializers.CharField(allow_null=True)
    group = serializers.CharField(allow_null=True)


@extend_schema_field(ScopeOutput)
class ScopeField(serializers.Field):
    """The scope of the instance being serialized (read only): its model id or its model group."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, value: Any) -> dict[str, str | None]:
        return scope_of(value)


ORGANIZATION = OpenApiParameter("organization", int, description="Only this organization's.")


def organization_check(organization_id: int) -> int:
    """`organization_id`, once it is known to exist (404 otherwise)."""
    get_or_404(Organization.objects, f"No organization {organization_id}.", "organization", pk=organization_id)
    return organization_id


def by_organization(queryset: Any, request: Request) -> Any:
    """`queryset` narrowed to the `organization` of the query string, if it names one (a 400 if not an id)."""
    raw = request.query_params.get("organization")
    if raw is None:
        return queryset
    if not is_id_text(raw):
        raise serializers.ValidationError({"organization": ["A whole number, the organization's id."]})
    return queryset.filter(organization_id=int(raw))
