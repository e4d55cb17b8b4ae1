"""The webhooks REST API, /api/webhooks/...: JSON, in the public OpenAPI schema.

Authenticated by an API key of the organization (`Authorization: Bearer sk-tb-...`) whose scopes allow the
`webhooks` endpoint (a key with no endpoint scopes allows every endpoint). People use the Webhooks page instead.
Views are thin: read the body, call one service or selector, answer JSON; errors come out in the one error shape
(api.errors), e.g. an unknown or another organization's endpoint is a 404, a bad URL or event type a 400 naming
the field.
"""

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ids import is_id_text
from accounts.models import ApiKeyEndpoint
from api.pagination import StrictLimitOffsetPagination
from api.parsers import SafeJSONParser
from billing.metering.callers import AuthenticatedKey, apikey_authenticate
from billing.webhooks import selectors, services
from billing.webhooks.errors import NotFound
from billing.webhooks.models import SUBSCRIBABLE, WebhookDelivery, WebhookEndpoint
from core.errors import ApplicationError

TAG = "webhooks"
ERRORS = {
    400: OpenApiResponse(description="Invalid input; `error.param` names the field and the message says why."),
    401: OpenApiResponse(description="No API key, or a wrong, revoked or expired one."),
    403: OpenApiResponse(description="The key's scopes do not allow the webhooks endpoint."),
    404: OpenApiResponse(description="No such endpoint or delivery in this organization."),
}


class ApiKeyAuthentication(BaseAuthentication):
    """An API key in the Authorization header, as the metered API takes it; the request acts for its organization."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, AuthenticatedKey] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if len(parts) != 2 or parts[0].lower() != b"bearer":
            raise exceptions.AuthenticationFailed("Send the API key as `Authorization: Bearer sk-tb-...`.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            secret = ""
        key = apikey_authenticate(secret=secret)
        if key is None:
            raise exceptions.AuthenticationFailed("Incorrect API key provided, or the key was revoked or has expired.")
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The same scheme as the metered API's (its definition is merged in from api.gateway.schema)."""

    target_class = ApiKeyAuthentication
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}


class ManagesWebhooks(BasePermission):
    message = "This API key's scopes do not allow the webhooks endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, AuthenticatedKey):
            raise exceptions.NotAuthenticated("Send an API key as `Authorization: Bearer sk-tb-...`.")
        return request.auth.allows_endpoint(ApiKeyEndpoint.WEBHOOKS)


class EndpointInputSerializer(serializers.Serializer):
    """Documents the body; the service checks it (one set of messages for the page and the API)."""

    url = serializers.URLField(help_text="An http(s) URL on a public address.")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=list(SUBSCRIBABLE)), min_length=1)
    description = serializers.CharField(required=False, max_length=200)
    enabled = serializers.BooleanField(required=False, default=True)

    class Meta:
        ref_name = "WebhookEndpointInput"


class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    secret = serializers.CharField(help_text="The signing secret (whsec_...); see the README's recipe.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "WebhookEndpoint"


class AttemptOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    succeeded = serializers.BooleanField()
    error = serializers.CharField()

    class Meta:
        ref_name = "WebhookAttempt"


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField(source="event.event_id")
    event_type = serializers.CharField(source="event.type")
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed"])
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempt_log = serializers.SerializerMethodField()

    class Meta:
        ref_name = "WebhookDelivery"

    @extend_schema_field(AttemptOutputSerializer(many=True))
    def get_attempt_log(self, delivery: WebhookDelivery) -> list[dict[str, Any]]:
        attempts = self.context.get("attempts", {}).get(delivery.pk, [])
        return AttemptOutputSerializer(attempts, many=True).data  # type: ignore[return-value]


def _id(raw: str, what: str) -> int:
    """An id from the URL; anything that is not one reads exactly like an unknown id."""
    if not is_id_text(raw):
        raise NotFound(f"webhook {what} not found", param=f"{what}_id")
    return int(raw)


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApplicationError("the body must be a JSON object", code="invalid_body")
    return request.data


def _organization_id(request: Request) -> int:
    return _key(request).organization_id


def _key(request: Request) -> AuthenticatedKey:
    assert isinstance(request.auth, AuthenticatedKey)  # ManagesWebhooks let only keys through
    return request.auth


def _actor(request: Request) -> str:
    """Who the audit log names: the key (a program acts, not a person)."""
    return f"api key {_key(request).key_id}"


def _endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return EndpointOutputSerializer(endpoint).data  # type: ignore[return-value]


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    attempts = selectors.webhook_delivery_attempts(delivery_ids=[delivery.pk])
    return DeliveryOutputSerializer(delivery, context={"attempts": attempts}).data  # type: ignore[return-value]


class WebhooksApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [ManagesWebhooks]
    parser_classes = [SafeJSONParser]


class EndpointListApi(WebhooksApi):
    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_list",
        summary="The organization's webhook endpoints",
        responses={200: EndpointOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        endpoints = selectors.webhook_endpoints(organization_id=_organization_id(request))
        return Response(EndpointOutputSerializer(endpoints, many=True).data)

    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_create",
        summary="Register an endpoint",
        request=EndpointInputSerializer,
        responses={201: EndpointOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = _body(request)
        unknown = sorted(set(body) - {"url", "event_types", "description", "enabled"})
        if unknown:
            raise ApplicationError(f"unknown field {unknown[0][:60]!r}", param=unknown[0][:60])
        endpoint = services.webhook_endpoint_create(
            organization_id=_organization_id(request),
            actor=_actor(request),
            url=body.get("url"),
            event_types=body.get("event_types"),
            description=body.get("description", ""),
            enabled=body.get("enabled", True),
        )
        return Response(_endpoint_json(endpoint), status=status.HTTP_201_CREATED)


class EndpointApi(WebhooksApi):
    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_retrieve",
        summary="An endpoint, with its secret",
        responses={200: EndpointOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_of(
            organization_id=_organization_id(request), endpoint_id=_id(endpoint_id, "endpoint")
        )
        return Response(_endpoint_json(endpoint))

    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_update",
        summary="Change an endpoint (the fields given)",
        request=EndpointInputSerializer(partial=True),
        responses={200: EndpointOutputSerializer, **ERRORS},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        body = _body(request)
        fields = {"url", "event_types", "description", "enabled"}
        unknown = sorted(set(body) - fields)
        if unknown:
            raise ApplicationError(f"unknown field {unknown[0][:60]!r}", param=unknown[0][:60])
        endpoint = services.webhook_endpoint_update(
            organization_id=_organization_id(request),
            endpoint_id=_id(endpoint_id, "endpoint"),
            actor=_actor(request),
            **{name: body[name] for name in fields if name in body},
        )
        return Response(_endpoint_json(endpoint))

    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_destroy",
        summary="Delete an endpoint",
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        services.webhook_endpoint_delete(
            organization_id=_organization_id(request),
            endpoint_id=_id(endpoint_id, "endpoint"),
            actor=_actor(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointSecretRotateApi(WebhooksApi):
    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_rotate_secret",
        summary="Make a new signing secret",
        request=None,
        responses={200: EndpointOutputSerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = services.webhook_endpoint_secret_rotate(
            organization_id=_organization_id(request),
            endpoint_id=_id(endpoint_id, "endpoint"),
            actor=_actor(request),
        )
        return Response(_endpoint_json(endpoint))


class EndpointTestApi(WebhooksApi):
    @extend_schema(
        tags=[TAG],
        operation_id="webhook_endpoints_test",
        summary="Send a webhook.test event to the endpoint",
        request=None,
        responses={202: DeliveryOutputSerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        delivery = services.webhook_test_send(
            organization_id=_organization_id(request),
            endpoint_id=_id(endpoint_id, "endpoint"),
            actor=_actor(request),
        )
        return Response(_delivery_json(delivery), status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(WebhooksApi):
    pagination_class = StrictLimitOffsetPagination

    @extend_schema(
        tags=[TAG],
        operation_id="webhook_deliveries_list",
        summary="The endpoint's deliveries, newest first, with every attempt",
        responses={200: DeliveryOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        deliveries = selectors.webhook_deliveries(
            organization_id=_organization_id(request), endpoint_id=_id(endpoint_id, "endpoint")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self) or []
        attempts = selectors.webhook_delivery_attempts(delivery_ids=[d.pk for d in page])
        data = DeliveryOutputSerializer(page, many=True, context={"attempts": attempts}).data
        return paginator.get_paginated_response(data)


class DeliveryRedeliverApi(WebhooksApi):
    @extend_schema(
        tags=[TAG],
        operation_id="webhook_deliveries_redeliver",
        summary="Send a delivery again now",
        request=None,
        responses={202: DeliveryOutputSerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        delivery = services.webhook_delivery_redeliver(
            organization_id=_organization_id(request),
            endpoint_id=_id(endpoint_id, "endpoint"),
            delivery_id=_id(delivery_id, "delivery"),
            actor=_actor(request),
        )
        return Response(_delivery_json(delivery), status=status.HTTP_202_ACCEPTED)
