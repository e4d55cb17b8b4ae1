"""One error shape for every API: OpenAI's {"error": {"message", "type", "param", "code"}}.

Services raise core.errors.ApplicationError (or a subclass), whose kind maps to a status here; DRF's own
exceptions (validation, auth, 404) are mapped to the same shape, so a client never has to parse two formats.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError, ErrorKind

# How the JSON edge answers each kind of domain error: the HTTP status and OpenAI's error type.
KIND_HTTP: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID: (status.HTTP_400_BAD_REQUEST, "invalid_request_error"),
    ErrorKind.NOT_FOUND: (status.HTTP_404_NOT_FOUND, "not_found_error"),
    ErrorKind.CONFLICT: (status.HTTP_409_CONFLICT, "invalid_request_error"),
    ErrorKind.GONE: (status.HTTP_410_GONE, "invalid_request_error"),
    ErrorKind.INSUFFICIENT_CREDIT: (status.HTTP_402_PAYMENT_REQUIRED, "insufficient_quota"),
    ErrorKind.PAYMENT_DECLINED: (status.HTTP_402_PAYMENT_REQUIRED, "card_error"),
    ErrorKind.UNAVAILABLE: (status.HTTP_503_SERVICE_UNAVAILABLE, "api_error"),
}
# OpenAI answers an unknown model as a request error, not a missing resource; clients key on it.
_TYPE_BY_CODE = {"model_not_found": "invalid_request_error"}


def http_of(exc: ApplicationError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of a domain error."""
    status_code, error_type = KIND_HTTP[exc.kind]
    return status_code, _TYPE_BY_CODE.get(exc.code or "", error_type)


def error_body(
    message: str, *, error_type: str, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code, **extra}}


def _first_validation_message(detail: Any, prefix: str = "") -> tuple[str, str | None]:
    """Flatten DRF's nested validation detail into one readable message and the offending field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = key if key != "non_field_errors" else None
            message, param = _first_validation_message(value, f"{prefix}{key}." if field else prefix)
            return message, param or (f"{prefix}{key}" if field else None)
    if isinstance(detail, list) and detail:
        return _first_validation_message(detail[0], prefix)
    return str(detail), None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        status_code, error_type = http_of(exc)
        body = error_body(exc.message, error_type=error_type, param=exc.param, code=exc.code, **exc.extra)
        return Response(body, status=status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message, param = _first_validation_message(exc.detail)
        if param:
            message = f"{param}: {message}"
        response.data = error_body(
            message, error_type="invalid_request_error", param=param, code="invalid_value", fields=exc.detail
        )
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response.data = error_body(str(exc.detail), error_type="authentication_error", code=exc.default_code)
    elif isinstance(exc, exceptions.PermissionDenied):
        response.data = error_body(str(exc.detail), error_type="permission_error", code=exc.default_code)
    elif isinstance(exc, exceptions.NotFound):
        response.data = error_body(str(exc.detail), error_type="not_found_error", code="not_found")
    elif isinstance(exc, exceptions.APIException):
        response.data = error_body(str(exc.detail), error_type="invalid_request_error", code=exc.default_code)
    return response


API_PREFIXES = ("/api/", "/v1/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL no route matches: the error shape for API clients, the site's page for people."""
    if request.path.startswith(API_PREFIXES):
        body = error_body(
            f"No such endpoint: {request.method} {request.path}", error_type="not_found_error", code="not_found"
        )
        return JsonResponse(body, status=404)
    return defaults.page_not_found(request, exception)


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES) or "json" in request.headers.get("Content-Type", "")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 for a request Django refuses before any view (a Host header not in ALLOWED_HOSTS, a malformed cookie or
    multipart body): the error shape for API clients, the site's page for people."""
    if wants_json(request):
        body = error_body(
            "The request was refused: its Host header or its framing is not acceptable to this server.",
            error_type="invalid_request_error",
            code="bad_request",
        )
        return JsonResponse(body, status=400)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: the error shape for API clients and the pages' JSON calls (the details are in the server's log), the
    site's page for people."""
    if wants_json(request):
        body = error_body(
            "The server failed to handle this request; try again.", error_type="api_error", code="server_error"
        )
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
