from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("staff/pricing/", include("billing.pricing.web.urls")),
    path("", include("api.urls")),
    path("", include("accounts.web.urls")),
    # Payments: /billing/ pages (top up, auto top-up, receipts) and Stripe's webhook at /stripe/webhook/.
    path("", include("billing.payments.web.urls")),
]

handler400 = "api.errors.bad_request"
handler404 = "api.errors.page_not_found"
handler500 = "api.errors.server_error"
