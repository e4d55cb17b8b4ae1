"""/api/keys/{id}/rate-limits/: a key's own requests and tokens per minute as JSON, for people signed in to the web
UI (session and CSRF; owners and developers change them, as on the key's page). In the public OpenAPI schema.
The limits apply inside the organization's: a call draws on the key's buckets and the organization's alike."""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.ids import is_id_text
from accounts.models import ApiKey
from accounts.permissions import Capability, membership_can
from accounts.services import apikey_update
from core.errors import ApplicationError, ErrorKind
from web.billing.budgets_api import BudgetsApiBase


class KeyNotFound(ApplicationError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


LIMITS = inline_serializer(
    "KeyRateLimits",
    {
        "api_key_id": serializers.IntegerField(read_only=True),
        "requests_per_minute": serializers.IntegerField(
            allow_null=True, min_value=1, help_text="null: none of its own"
        ),
        "tokens_per_minute": serializers.IntegerField(allow_null=True, min_value=1, help_text="null: none of its own"),
    },
)


def _limits(api_key: ApiKey) -> dict[str, Any]:
    return {
        "api_key_id": api_key.pk,
        "requests_per_minute": api_key.requests_per_minute,
        "tokens_per_minute": api_key.tokens_per_minute,
    }


def _key(request: Request, raw: str) -> ApiKey:
    organization_id = request.membership.organization_id  # type: ignore[attr-defined]
    api_key = ApiKey.objects.filter(pk=int(raw), organization_id=organization_id).first() if is_id_text(raw) else None
    if api_key is None:
        raise KeyNotFound("API key not found", param="api_key_id")
    return api_key


class KeyRateLimitsApi(BudgetsApiBase):
    @extend_schema(operation_id="key_rate_limits_retrieve", tags=["api keys"], responses={200: LIMITS})
    def get(self, request: Request, api_key_id: str) -> Response:
        return Response(_limits(_key(request, api_key_id)))

    @extend_schema(
        operation_id="key_rate_limits_update",
        tags=["api keys"],
        summary="Set a key's own requests and tokens per minute (both; null removes one)",
        request=LIMITS,
        responses={200: LIMITS},
    )
    def put(self, request: Request, api_key_id: str) -> Response:
        api_key = _key(request, api_key_id)
        if not membership_can(request.membership, Capability.MANAGE_KEYS):  # type: ignore[attr-defined]
            raise PermissionDenied("Only owners and developers can change API keys.")
        body = request.data
        if not isinstance(body, dict):
            raise ApplicationError("the body must be a JSON object", code="invalid_body")
        for field in ("requests_per_minute", "tokens_per_minute"):
            if field not in body:
                raise ApplicationError(f"{field} is required (null for none)", param=field)
        api_key = apikey_update(
            api_key_id=api_key.pk,
            actor=request.user,  # type: ignore[arg-type]
            requests_per_minute=body["requests_per_minute"],
            tokens_per_minute=body["tokens_per_minute"],
        )
        return Response(_limits(api_key))
