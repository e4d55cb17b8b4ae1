"""/settings/webhooks/: the organization's webhook endpoints (owners, billing admins and developers).

The list with a form to add one; an endpoint's page with its settings, its secret (revealed on request), "Send test
event", and the delivery log with every attempt and a Redeliver button. Writes are POSTs that redirect back.
"""

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Role
from billing.webhooks import selectors, services
from billing.webhooks.models import SUBSCRIBABLE, EventType, WebhookEndpoint
from core.errors import ApplicationError
from web.context import membership_required
from web.forms import form_error_from
from web.views.common import membership_of

WEBHOOK_ROLES = (Role.OWNER, Role.BILLING_ADMIN, Role.DEVELOPER)
DELIVERIES_SHOWN = 50
EVENT_CHOICES = [(value, f"{value} — {EventType(value).label}") for value in SUBSCRIBABLE]


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL", max_length=2000, help_text="An https:// URL of yours that accepts POST requests."
    )
    description = forms.CharField(max_length=200, required=False, help_text="For you: what receives these events.")
    event_types = forms.MultipleChoiceField(
        label="Events to send", choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)


def _organization_id(request: HttpRequest) -> int:
    return int(membership_of(request).organization_id)


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    try:
        return selectors.endpoint_of(organization_id=_organization_id(request), endpoint_id=endpoint_id)
    except ApplicationError:
        raise Http404("No such webhook endpoint.") from None


@membership_required(*WEBHOOK_ROLES)
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.webhook_endpoint_create(
                organization_id=_organization_id(request),
                actor=request.user,  # type: ignore[arg-type]
                **form.cleaned_data,
            )
        except ApplicationError as error:
            form_error_from(form, error)
        else:
            messages.success(request, "Added the endpoint. Copy its signing secret below to verify deliveries.")
            return HttpResponseRedirect(f"/settings/webhooks/{endpoint.pk}/?reveal=1")
    endpoints = selectors.webhook_endpoints(organization_id=_organization_id(request))
    status = 400 if form.is_bound else 200
    return render(request, "web/settings/webhooks.html", {"form": form, "endpoints": endpoints}, status=status)


@never_cache
@membership_required(*WEBHOOK_ROLES)
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    initial = {k: getattr(endpoint, k) for k in ("url", "description", "event_types", "enabled")}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.webhook_endpoint_update(
                organization_id=_organization_id(request),
                endpoint_id=endpoint.pk,
                actor=request.user,  # type: ignore[arg-type]
                **form.cleaned_data,
            )
        except ApplicationError as error:
            form_error_from(form, error)
        else:
            messages.success(request, "Saved the endpoint.")
            return HttpResponseRedirect(f"/settings/webhooks/{endpoint.pk}/")
    deliveries = list(
        selectors.webhook_deliveries(organization_id=_organization_id(request), endpoint_id=endpoint.pk)[
            :DELIVERIES_SHOWN
        ]
    )
    attempts = selectors.webhook_delivery_attempts(delivery_ids=[d.pk for d in deliveries])
    context = {
        "endpoint": endpoint,
        "form": form,
        "rows": [(delivery, attempts[delivery.pk]) for delivery in deliveries],
        "reveal": request.GET.get("reveal") == "1",
    }
    return render(request, "web/settings/webhook_detail.html", context, status=400 if form.is_bound else 200)


def _act(request: HttpRequest, endpoint_id: int, done: str, action: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    arguments: dict[str, Any] = {
        "organization_id": _organization_id(request),
        "endpoint_id": endpoint.pk,
        "actor": cast(User, request.user),
    }
    try:
        if action == "test":
            services.webhook_test_send(**arguments)
        elif action == "rotate":
            services.webhook_endpoint_secret_rotate(**arguments)
        elif action == "delete":
            services.webhook_endpoint_delete(**arguments)
            messages.success(request, done)
            return HttpResponseRedirect("/settings/webhooks/")
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    suffix = "?reveal=1" if action == "rotate" else ""
    return HttpResponseRedirect(f"/settings/webhooks/{endpoint.pk}/{suffix}")


@membership_required(*WEBHOOK_ROLES)
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(request, endpoint_id, "Sent a test event; its delivery is in the log below.", "test")


@membership_required(*WEBHOOK_ROLES)
@require_POST
def webhook_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(request, endpoint_id, "Made a new signing secret; deliveries from now on are signed with it.", "rotate")


@membership_required(*WEBHOOK_ROLES)
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(request, endpoint_id, "Deleted the endpoint.", "delete")


@membership_required(*WEBHOOK_ROLES)
@require_POST
def webhook_redeliver(request: HttpRequest, endpoint_id: int, delivery_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        services.webhook_delivery_redeliver(
            organization_id=_organization_id(request),
            endpoint_id=endpoint.pk,
            delivery_id=delivery_id,
            actor=cast(User, request.user),
        )
    except ApplicationError:
        raise Http404("No such delivery.") from None
    messages.success(request, "Sending the event again.")
    return HttpResponseRedirect(f"/settings/webhooks/{endpoint.pk}/")
