"""/settings/notifications/: the low-balance and expiring-credit thresholds. Everyone sees them; owners and
billing admins change them."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.permissions import Capability
from billing.notifications import selectors, services
from core.errors import ApplicationError
from core.money import format_amount
from web.context import membership_required
from web.forms import NOTIFICATION_ERROR_FIELDS, NotificationSettingsForm, form_error_from
from web.views.common import capabilities, membership_of, require


@membership_required()
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    organization = membership_of(request).organization
    prefs = selectors.notification_settings_get(organization_id=organization.pk)
    if request.method == "POST":
        require(request, Capability.MANAGE_BILLING)
        form = NotificationSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.notification_settings_update(
                    organization_id=organization.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    low_balance_enabled=data["low_balance_enabled"],
                    low_balance_threshold_nano=data["low_balance_threshold"],
                    credit_expiring_enabled=data["credit_expiring_enabled"],
                    credit_expiring_days=data["credit_expiring_days"],
                    email_enabled=data["email_enabled"],
                )
            except ApplicationError as error:
                form_error_from(form, error, NOTIFICATION_ERROR_FIELDS)
            else:
                messages.success(request, "Saved the notification settings.")
                return HttpResponseRedirect("/settings/notifications/")
    else:
        form = NotificationSettingsForm(
            initial={
                "low_balance_enabled": prefs.low_balance_enabled,
                "low_balance_threshold": format_amount(prefs.low_balance_threshold_nano),
                "credit_expiring_enabled": prefs.credit_expiring_enabled,
                "credit_expiring_days": prefs.credit_expiring_days,
                "email_enabled": prefs.email_enabled,
            }
        )
    context = {"form": form, "currency": organization.currency, "can": capabilities(request)}
    return render(request, "web/settings/notifications.html", context, status=400 if form.is_bound else 200)
