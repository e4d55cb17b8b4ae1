"""Middleware of the whole site (the metered API has its own chain: api.gateway.asgi)."""

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from redis.exceptions import RedisError

from api.errors import error_body, wants_json

logger = logging.getLogger(__name__)

NUL = "\x00"


def url_nul_refuse(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """400 for a URL whose path or query carries the NUL character (%00).

    PostgreSQL text cannot hold it, so a search, filter or lookup that passed it on would fail as a server error;
    no URL of the product needs it. Bodies are checked where they are parsed (forms and serializers refuse it).
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if _holds_nul(request):
            message = "The URL contains the NUL character (%00), which is not allowed; remove it and try again."
            if wants_json(request):
                return JsonResponse(
                    error_body(message, error_type="invalid_request_error", code="invalid_value"), status=400
                )
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return get_response(request)

    return middleware


def _holds_nul(request: HttpRequest) -> bool:
    query = request.GET.lists()
    return NUL in request.path or any(NUL in name or any(NUL in value for value in values) for name, values in query)


class CacheOutageAnswer:
    """503 with Retry-After, not 500, for a page that needs the cache (Redis) while it cannot be reached.

    Log-in, sessions and the pages work during an outage (the log-in throttle fails open; sessions are in the
    database). What still needs Redis is allauth's own limits on sign-up, password reset and password change, which
    raise when it is down: those forms answer "temporarily unavailable" instead of an error page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RedisError):
            return None
        logger.error("%s %s: the cache is unreachable (%s); answered 503", request.method, request.path, exception)
        if wants_json(request):
            body = error_body(
                "A service this request needs is briefly unavailable; try again in a minute.",
                error_type="api_error",
                code="service_unavailable",
            )
            response: HttpResponse = JsonResponse(body, status=503)
        else:
            response = render(request, "503.html", status=503)
        response["Retry-After"] = "60"
        return response
