"""What every /v1 view shares: OpenAI's error shape and API-key authentication."""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiKeyAccess
from api.errors import http_of
from api.gateway.cache import TTLCache
from billing.metering.callers import AuthenticatedKey, aapikey_authenticate
from core.errors import ApplicationError

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}} (and "details")."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = headers or {}
        # A machine-readable object beside the message (the 402s of api.gateway.refusals): error.details.
        self.details = details

    def response(self) -> JsonResponse:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        if self.details is not None:
            error["details"] = self.details
        body: dict[str, Any] = {"error": error}
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def bearer_secret(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise GatewayError(
            401,
            "You didn't provide an API key. Send it in the Authorization header: 'Authorization: Bearer sk-tb-...'.",
            code="missing_api_key",
        )
    return secret.strip()


# Concurrent requests with the same key share one authentication (which the accounts selectors cache): a burst
# of requests on a cold cache then costs one database query, not one connection per request.
_authenticating: "TTLCache[AuthenticatedKey | None]" = TTLCache("api-keys", keep=False)


async def _key_of(request: HttpRequest) -> AuthenticatedKey:
    secret = bearer_secret(request)
    key = await _authenticating.get(secret, lambda: aapikey_authenticate(secret=secret))
    if key is None:
        raise GatewayError(
            401,
            "Incorrect API key provided, or the key was revoked or has expired. "
            "You can find your API keys on the API keys page.",
            code="invalid_api_key",
        )
    return key


async def key_authenticate(request: HttpRequest, *, endpoint: str) -> AuthenticatedKey:
    """The API key of the request, allowed to call `endpoint`; GatewayError 401/403 otherwise."""
    key = await _key_of(request)
    if key.access != ApiKeyAccess.METERED:
        raise GatewayError(
            403,
            "This is an admin key: it reads the organization's billing data (/v1/organization/...) and cannot call "
            f"the {endpoint} endpoint. Use a metered API key.",
            error_type="permission_error",
            code="admin_key_not_metered",
        )
    if not key.allows_endpoint(endpoint):
        raise GatewayError(
            403,
            f"This API key is not allowed to call the {endpoint} endpoint; allowed: {', '.join(key.scope_endpoints)}.",
            error_type="permission_error",
            code="endpoint_not_allowed",
        )
    return key


async def admin_key_authenticate(request: HttpRequest) -> AuthenticatedKey:
    """The admin key of the request (the organization's billing data); GatewayError 401/403 otherwise."""
    key = await _key_of(request)
    if key.access != ApiKeyAccess.ADMIN:
        raise GatewayError(
            403,
            "This endpoint reads the organization's billing data and needs an admin API key; a metered key cannot "
            "read it. An owner or billing admin creates admin keys on the API keys page.",
            error_type="permission_error",
            code="admin_key_required",
        )
    return key


AsyncView = Callable[..., Awaitable[HttpResponseBase]]


def gateway_view(*methods: str) -> Callable[[AsyncView], Callable[..., Any]]:
    """Mark an async view of the metered API: API keys, not cookies, authenticate it (so no CSRF check), only
    `methods` are allowed, and a GatewayError raised anywhere inside is answered in OpenAI's shape."""

    # Typed loosely on the way out: django-stubs' path() does not know async views.
    def decorator(view: AsyncView) -> Callable[..., Any]:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return GatewayError(
                    405,
                    f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                    code="method_not_allowed",
                    headers={"Allow": ", ".join(methods)},
                ).response()
            try:
                return await view(request, *args, **kwargs)
            except GatewayError as error:
                return error.response()
            except ApplicationError as error:
                status_code, error_type = http_of(error)
                return GatewayError(
                    status_code, error.message, error_type=error_type, code=error.code, param=error.param
                ).response()
            except Exception:
                # Never an HTML page to an API client; the details go to the log only.
                logger.exception("unhandled error in %s %s", request.method, request.path)
                return GatewayError(
                    500,
                    "The server had an error while processing your request. Nothing was charged for it.",
                    error_type="server_error",
                    code="internal_error",
                ).response()

        return csrf_exempt(wrapped)

    return decorator


@csrf_exempt
async def unknown_endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """Any other path under /v1: a 404 in OpenAI's shape (clients parse it), not an HTML page."""
    return GatewayError(
        404,
        f"Unknown request URL: {request.method} {request.path}. See the API documentation for the endpoints.",
        code="unknown_url",
    ).response()
