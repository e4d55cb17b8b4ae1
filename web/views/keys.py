"""API keys: list, create (the secret shown once), edit, rotate (the new secret shown once), revoke.

A key's spend limit is its hard budget (billing.metering): the key form sets it as a shortcut, in the same
transaction as the key's other changes, and the list shows it with what the period has used.

A new secret is rendered in the response to the POST that made it and stored nowhere (the database keeps its
hash), so it cannot be shown again; the response is marked no-store so no cache keeps it either.
"""

from datetime import datetime, timedelta

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.models import ApiKey, ApiKeyAccess
from accounts.permissions import Capability
from accounts.selectors import apikey_get, apikey_list
from accounts.services import apikey_create, apikey_revoke, apikey_rotate, apikey_update
from billing.metering.budgets import selectors as budget_selectors
from billing.metering.budgets.selectors import BudgetState
from billing.metering.budgets.services import (
    Actor,
    budget_delete,
    budgets_follow_rotation,
    key_spend_limit_set,
    key_spend_limits_clear,
)
from billing.pricing.models import AIModel
from core.errors import ApplicationError
from web.context import membership_required
from web.forms import APIKEY_ERROR_FIELDS, ApiKeyForm, RotateForm, form_error_from
from web.views.common import capabilities, membership_of, require


def key_status(api_key: ApiKey, *, now: datetime | None = None) -> tuple[str, str]:
    """(status, badge class) as the list shows it."""
    moment = now or timezone.now()
    if api_key.revoked_at is not None:
        return "revoked", "error"
    if api_key.expires_at is not None and api_key.expires_at <= moment:
        return "expired", "error"
    if api_key.replaced_by_id is not None:
        return "rotated", "warn"
    return "active", "ok"


def _model_slugs() -> list[str]:
    return list(AIModel.objects.order_by("slug").values_list("slug", flat=True))


def _secret_page(
    request: HttpRequest, *, api_key: ApiKey, secret: str, rotated_from: ApiKey | None = None
) -> HttpResponse:
    response = render(
        request, "web/keys/secret.html", {"api_key": api_key, "secret": secret, "rotated_from": rotated_from}
    )
    response["Cache-Control"] = "no-store"
    return response


@membership_required()
def key_list(request: HttpRequest) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    now = timezone.now()
    keys = list(apikey_list(organization_id=organization_id).select_related("replaced_by"))
    limits = budget_selectors.key_spend_limits(organization_id=organization_id, now=now)
    rows = [(key, *key_status(key, now=now), limits.get(key.pk, [])) for key in keys]
    return render(request, "web/keys/list.html", {"rows": rows, "can": capabilities(request), "now": now})


def _limit_apply(
    form: ApiKeyForm, *, api_key: ApiKey, actor: Actor, shown: list[BudgetState], changed_only: bool
) -> None:
    """Apply the form's spend limit to the key's hard budgets: set the one for the chosen period, or (emptied)
    remove them all. When the form showed the key's one limit and its period changed, that limit is replaced, not
    kept beside the new one."""
    change = form.spend_limit_change(changed_only=changed_only)
    if change is None:
        return
    amount_nano, period = change
    organization_id = api_key.organization_id
    if amount_nano is None:
        key_spend_limits_clear(organization_id=organization_id, api_key_id=api_key.pk, actor=actor)
        return
    key_spend_limit_set(
        organization_id=organization_id,
        api_key_id=api_key.pk,
        actor=actor,
        amount_nano=amount_nano,
        period=period,
    )
    if len(shown) == 1 and shown[0].budget.period != period:
        budget_delete(organization_id=organization_id, budget_id=shown[0].budget.pk, actor=actor)


def _limits_of(api_key: ApiKey) -> list[BudgetState]:
    return budget_selectors.key_spend_limits(organization_id=api_key.organization_id).get(api_key.pk, [])


@never_cache
@membership_required()
@require_http_methods(["GET", "POST"])
def key_create(request: HttpRequest) -> HttpResponse:
    require(request, Capability.MANAGE_KEYS)
    membership = membership_of(request)
    form = ApiKeyForm(request.POST or None, model_slugs=_model_slugs())
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data.get("access") == ApiKeyAccess.ADMIN:
            # An admin key reads the organization's billing data: who creates it must also manage billing (owners).
            require(request, Capability.MANAGE_BILLING)
        try:
            with transaction.atomic():  # the key and its spend limit (its hard budget) together, or neither
                api_key, secret = apikey_create(
                    organization_id=membership.organization_id,
                    created_by=request.user,  # type: ignore[arg-type]
                    **form.service_arguments(changed_only=False),
                )
                _limit_apply(form, api_key=api_key, actor=request.user, shown=[], changed_only=False)
        except ApplicationError as error:
            form_error_from(form, error, APIKEY_ERROR_FIELDS)
        else:
            return _secret_page(request, api_key=api_key, secret=secret)
    status = 400 if request.method == "POST" else 200
    return render(request, "web/keys/create.html", {"form": form}, status=status)


@membership_required()
@require_http_methods(["GET", "POST"])
def key_detail(request: HttpRequest, key_id: int) -> HttpResponse:
    """The key's settings; owners and developers can edit them here."""
    organization_id = membership_of(request).organization_id
    api_key = apikey_get(organization_id=organization_id, api_key_id=key_id)
    if request.method == "POST":
        require(request, Capability.MANAGE_KEYS)
    limits = _limits_of(api_key)
    shown = (limits[0].budget.amount_nano, limits[0].budget.period) if len(limits) == 1 else None
    form = ApiKeyForm(request.POST or None, api_key=api_key, limit=shown, model_slugs=_model_slugs())
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # the key's settings and its spend limit together, or neither
                apikey_update(
                    api_key_id=api_key.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    **form.service_arguments(changed_only=True),
                )
                _limit_apply(form, api_key=api_key, actor=request.user, shown=limits, changed_only=True)
        except ApplicationError as error:
            form_error_from(form, error, APIKEY_ERROR_FIELDS)
        else:
            messages.success(request, f"Saved the settings of “{form.cleaned_data['name']}”.")
            return HttpResponseRedirect(f"/keys/{api_key.pk}/")
    status, badge = key_status(api_key)
    context = {
        "api_key": api_key,
        "form": form,
        "status": status,
        "badge": badge,
        "can": capabilities(request),
        "editable": api_key.revoked_at is None,
        "limits": limits,
        "budgets": [
            state
            for state in budget_selectors.budget_list(organization_id=organization_id)
            if state.budget.api_key_id == api_key.pk
        ],
    }
    return render(request, "web/keys/detail.html", context, status=400 if request.method == "POST" else 200)


@never_cache
@membership_required()
@require_http_methods(["GET", "POST"])
def key_rotate(request: HttpRequest, key_id: int) -> HttpResponse:
    require(request, Capability.MANAGE_KEYS)
    api_key = apikey_get(organization_id=membership_of(request).organization_id, api_key_id=key_id)
    form = RotateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # the key and its budgets move together
                new_key, secret = apikey_rotate(
                    api_key_id=api_key.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    overlap=timedelta(hours=form.cleaned_data["overlap_hours"]),
                )
                budgets_follow_rotation(
                    organization_id=api_key.organization_id, old_key_id=api_key.pk, new_key_id=new_key.pk
                )
        except ApplicationError as error:
            form_error_from(form, error, APIKEY_ERROR_FIELDS)
        else:
            api_key.refresh_from_db()
            return _secret_page(request, api_key=new_key, secret=secret, rotated_from=api_key)
    status = 400 if request.method == "POST" else 200
    return render(request, "web/keys/rotate.html", {"api_key": api_key, "form": form}, status=status)


@membership_required()
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes (effective within seconds)."""
    require(request, Capability.MANAGE_KEYS)
    api_key = apikey_get(organization_id=membership_of(request).organization_id, api_key_id=key_id)
    if request.method == "POST":
        apikey_revoke(api_key_id=api_key.pk, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Revoked “{api_key.name}”. Calls with it are refused within seconds.")
        return HttpResponseRedirect("/keys/")
    return render(request, "web/keys/revoke.html", {"api_key": api_key})
