"""Routes of the APIs: the metered API under /v1/, the REST API for customers and staff under /api/."""

from django.urls import include, path

urlpatterns = [
    path("v1/", include("api.gateway.urls")),
    # Staff: model servers (upstreams) per model.
    path("api/staff/", include("api.staff.upstreams")),
]
