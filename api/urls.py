"""Routes of the APIs: the metered API under /v1/, the REST API for customers and staff under /api/."""

from django.urls import include, path

from api import docs, stripe_webhook, webhooks

urlpatterns = [
    path("v1/", include("api.gateway.urls")),
    # Stripe's events about payments, refunds and disputes.
    path("stripe/webhook/", stripe_webhook.stripe_webhook, name="stripe_webhook"),
    # OpenAPI schemas and their docs pages: the public API for anyone, the staff REST API for staff only.
    path("api/schema/", docs.PublicSchemaApi.as_view(), name="api-schema"),
    path("api/docs/", docs.public_docs, name="api-docs"),
    path("api/staff/schema/", docs.StaffSchemaApi.as_view(), name="staff-api-schema"),
    path("api/staff/docs/", docs.staff_docs, name="staff-api-docs"),
    # Staff: organizations, credit, balances and the journal.
    path("api/staff/", include("api.staff.urls")),
    # Staff: refunds of paid credit and the card top-ups they apply to.
    path("api/staff/", include("api.staff.payments_urls")),
    # Staff: models, prices, tiers, plans, commitments, overrides, preview.
    path("api/staff/", include("api.staff.pricing.urls")),
    # Staff: model servers (upstreams) per model.
    path("api/staff/", include("api.staff.upstreams")),
    # Customers' webhook endpoints, their delivery logs, test events and redelivery (API keys).
    path("api/webhooks/endpoints/", webhooks.EndpointListApi.as_view(), name="api_webhook_endpoints"),
    path("api/webhooks/endpoints/<str:endpoint_id>/", webhooks.EndpointApi.as_view(), name="api_webhook_endpoint"),
    path(
        "api/webhooks/endpoints/<str:endpoint_id>/rotate_secret/",
        webhooks.EndpointSecretRotateApi.as_view(),
        name="api_webhook_endpoint_rotate",
    ),
    path("api/webhooks/endpoints/<str:endpoint_id>/test/", webhooks.EndpointTestApi.as_view(), name="api_webhook_test"),
    path(
        "api/webhooks/endpoints/<str:endpoint_id>/deliveries/",
        webhooks.DeliveryListApi.as_view(),
        name="api_webhook_deliveries",
    ),
    path(
        "api/webhooks/endpoints/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/",
        webhooks.DeliveryRedeliverApi.as_view(),
        name="api_webhook_redeliver",
    ),
]
