"""Routes of the APIs: the metered API under /v1/, the REST API for customers and staff under /api/."""

from django.urls import include, path

urlpatterns = [
    path("v1/", include("api.gateway.urls")),
    # Staff: organizations, credit, balances and the journal.
    path("api/staff/", include("api.staff.urls")),
    # Staff: refunds of paid credit and the card top-ups they apply to.
    path("api/staff/", include("billing.payments.api_urls")),
    # Staff: models, prices, tiers, plans, commitments, overrides, preview.
    path("api/staff/", include("api.staff.pricing.urls")),
    # Staff: model servers (upstreams) per model.
    path("api/staff/", include("api.staff.upstreams")),
]
