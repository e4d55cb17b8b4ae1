"""Customer web pages. Each area appends its own routes to `urlpatterns`."""

from django.urls import path

from accounts.web import context

urlpatterns = [
    path("organization/switch/", context.organization_switch, name="organization_switch"),
]
