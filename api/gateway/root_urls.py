"""The URLconf the metered API resolves against (set per request by api.gateway.asgi.GatewayMiddleware): only the
/v1/ routes, flat, so resolving a call walks one short list."""

from django.urls import URLPattern, path, re_path

from api.gateway.http import unknown_endpoint
from api.gateway.urls import ROUTES

urlpatterns: list[URLPattern] = [path(f"v1/{route}", view, name=name) for route, view, name in ROUTES]
urlpatterns.append(re_path(r"^v1/", unknown_endpoint))
