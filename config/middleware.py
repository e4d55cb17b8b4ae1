"""Middleware of the whole site (the metered API has its own chain: api.gateway.asgi)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from api.errors import error_body, wants_json

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
