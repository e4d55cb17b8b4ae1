"""The OpenAPI schemas and their docs pages.

- `/api/schema/`, `/api/docs/`: the public API, for anyone: the metered API (/v1, described in
  api.gateway.schema) and any customer REST endpoint under /api/ outside /api/staff/.
- `/api/staff/schema/`, `/api/staff/docs/`: the staff REST API, for staff only (the schema answers 401/403 like
  any staff endpoint; the page sends a visitor who is not logged in to the login page, and answers 403 to a user
  who is not staff).

`manage.py spectacular` writes the whole of it (both), from SPECTACULAR_SETTINGS.

The docs pages are Redoc from the product's own static files (drf-spectacular-sidecar), with no CDN, web font or
inline script, under a Content-Security-Policy that allows nothing from elsewhere.
"""

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny, IsAdminUser

from api.gateway import schema as gateway_schema

STAFF_PREFIX = "/api/staff/"
ENUMS_HOOK = "drf_spectacular.hooks.postprocess_schema_enums"
GATEWAY_HOOK = "api.gateway.schema.gateway_paths_add"
# Redoc draws with styles it injects itself (styled-components), and searches in a worker it starts from a blob.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def public_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular preprocessing hook: the REST endpoints customers may call (none under /api/staff/)."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(STAFF_PREFIX)]


def staff_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular preprocessing hook: the staff REST API only."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(STAFF_PREFIX)]


class PublicSchemaApi(SpectacularAPIView):
    """The public API's OpenAPI schema (YAML, or JSON with `?format=json`)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    custom_settings = {
        "TITLE": "Token billing API",
        "DESCRIPTION": gateway_schema.DESCRIPTION,
        "PREPROCESSING_HOOKS": ["api.docs.public_endpoints"],
        "POSTPROCESSING_HOOKS": [ENUMS_HOOK, GATEWAY_HOOK],
    }


class StaffSchemaApi(SpectacularAPIView):
    """The staff REST API's OpenAPI schema; staff only, authenticated as every staff endpoint is."""

    permission_classes = [IsAdminUser]
    custom_settings = {
        "TITLE": "Token billing staff API",
        "DESCRIPTION": "The staff REST API under /api/staff/: organizations, credit, refunds, the pricing catalogue "
        "and model servers. Staff users only. Errors have OpenAI's shape, "
        '`{"error": {"message", "type", "param", "code"}}`.',
        "PREPROCESSING_HOOKS": ["api.docs.staff_endpoints"],
        "POSTPROCESSING_HOOKS": [ENUMS_HOOK],
    }


def _docs_page(request: HttpRequest, *, title: str, schema_url_name: str) -> HttpResponse:
    response = render(
        request, "api/docs.html", {"title": title, "schema_url": f"{reverse(schema_url_name)}?format=json"}
    )
    response["Content-Security-Policy"] = DOCS_CSP
    return response


@require_safe
def public_docs(request: HttpRequest) -> HttpResponse:
    return _docs_page(request, title="Token billing API", schema_url_name="api-schema")


@require_safe
def staff_docs(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not request.user.is_staff:
        raise PermissionDenied
    return _docs_page(request, title="Token billing staff API", schema_url_name="staff-api-schema")
