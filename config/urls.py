from collections.abc import Sequence

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView

admin_urls: tuple[Sequence[URLResolver | URLPattern], str | None, str | None]
if settings.ADMIN_ENABLED:
    admin_urls = admin.site.urls
else:
    # No admin: its log-in address (where staff_member_required sends anonymous visitors) leads to the site's one
    # log-in page, and everything else under /admin/ is not found.
    admin_urls = include(
        ([path("login/", RedirectView.as_view(pattern_name="account_login", query_string=True), name="login")], "admin")
    )

urlpatterns = [
    path("admin/", admin_urls),
    path("accounts/", include("allauth.urls")),
    path("staff/pricing/", include("web.staff.urls")),
    # Staff console: an organization's billing (profile, overdraft, dunning, suspension).
    path("staff/organizations/", include("web.staff.billing_urls")),
    path("staff/invoices/", include("web.staff.invoice_urls")),
    path("", include("api.urls")),
    path("", include("web.urls")),
    # Payments: /billing/ pages (top up, auto top-up, receipts).
    path("", include("web.billing.urls")),
]

handler400 = "api.errors.bad_request"
handler404 = "api.errors.page_not_found"
handler500 = "api.errors.server_error"
