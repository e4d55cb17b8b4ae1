"""What every staff pricing endpoint shares: staff-only access, strict input, and the list shape."""

from typing import Any

from django.db.models import Model
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.views import APIView

from billing.pricing.errors import PricingNotFound

MAX_LIST = 500


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
