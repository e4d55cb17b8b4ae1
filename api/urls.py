"""Routes of the APIs: the metered API under /v1/, the REST API for customers and staff under /api/."""

from django.urls import include, path

urlpatterns = [
    path("v1/", include("api.gateway.urls")),
    path("api/staff/", include("api.staff.pricing.urls")),
]
