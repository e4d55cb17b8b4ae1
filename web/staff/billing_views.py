"""The staff console's billing page of an organization: how it is invoiced (period anchor, collection method and
net terms, progressive billing threshold), its overdraft, its dunning state, and suspending or restoring its
postpaid use. Every change goes through its service with a reason, kept in the audit log; bad input answers the
page again with the form's errors (400, or 409 when the state forbids it) and writes nothing."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Q
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.ids import is_id_text
from accounts.models import Organization
from accounts.selectors import audit_events
from billing.invoicing import selectors
from billing.invoicing.services import billing_profile_set, profile_get
from billing.invoicing.services.suspensions import postpaid_restore_manual, postpaid_suspend_manual
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from core.errors import ApplicationError, ErrorKind
from core.money import format_amount
from web.forms import form_error_from
from web.staff.billing_forms import BillingProfileForm, OverdraftForm, SuspensionForm

LIST_SIZE = 200


@staff_member_required
@require_GET
def organizations(request: HttpRequest) -> HttpResponse:
    """Organizations to open, found by name or id."""
    query = request.GET.get("q", "").strip()[:100]
    listed = Organization.objects.order_by("name")
    if query:
        match = Q(name__icontains=query)
        if is_id_text(query):
            match |= Q(pk=int(query))
        listed = listed.filter(match)
    return render(request, "staff/billing/organizations.html", {"organizations": listed[:LIST_SIZE], "q": query})


def _organization(organization_id: int) -> Organization:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise Http404("no such organization")
    return organization


def _page(request: HttpRequest, organization: Organization, *, status: int = 200, **bound: Form) -> HttpResponse:
    organization_id = organization.pk
    profile = profile_get(organization_id=organization_id)
    balance = ledger_selectors.wallet_balance(organization_id=organization_id)
    threshold = profile.progressive_threshold_nano
    forms: dict[str, Form] = {
        "profile_form": BillingProfileForm(
            initial={
                "anchor_day": profile.anchor_day,
                "collection_method": profile.collection_method,
                "days_until_due": profile.days_until_due,
                "progressive_threshold": "" if threshold is None else format_amount(threshold),
            }
        ),
        "overdraft_form": OverdraftForm(initial={"overdraft_limit": format_amount(balance.overdraft_limit_nano)}),
        "suspension_form": SuspensionForm(),
    }
    forms |= bound
    next_period = selectors.periods_next(organization_ids=[organization_id]).get(organization_id)
    context: dict[str, Any] = {
        "organization": organization,
        "profile": profile,
        "threshold": threshold,
        "default_threshold": settings.INVOICE_PROGRESSIVE_THRESHOLD_NANO,
        "next_period": next_period,
        "balance": balance,
        "unpaid": selectors.invoices_unpaid(organization_id=organization_id),
        "retries": len(settings.INVOICE_DUNNING_RETRY_DAYS),
        "suspend_after_days": settings.INVOICE_SUSPEND_AFTER_DAYS,
        "suspension": selectors.suspension_of(organization_id=organization_id),
        "events": audit_events(organization_id=organization_id)[:20],
        **forms,
    }
    return render(request, "staff/billing/organization.html", context, status=status)


@staff_member_required
@require_GET
def organization_billing(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _page(request, _organization(organization_id))


def _refused(
    request: HttpRequest, organization: Organization, name: str, form: Form, exc: ApplicationError
) -> HttpResponse:
    form_error_from(form, exc)
    return _page(request, organization, status=409 if exc.kind == ErrorKind.CONFLICT else 400, **{name: form})


@staff_member_required
@require_POST
def profile_update(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization(organization_id)
    form = BillingProfileForm(request.POST)
    if not form.is_valid():
        return _page(request, organization, status=400, profile_form=form)
    data = form.cleaned_data
    try:
        billing_profile_set(
            organization_id=organization.pk,
            anchor_day=data["anchor_day"],
            collection_method=data["collection_method"],
            days_until_due=data["days_until_due"],
            progressive_threshold_nano=data["progressive_threshold"],
            actor=request.user,  # type: ignore[arg-type]
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _refused(request, organization, "profile_form", form, exc)
    messages.success(request, "Billing profile saved.")
    return redirect("staff-billing-organization", organization_id=organization.pk)


@staff_member_required
@require_POST
def overdraft_update(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization(organization_id)
    form = OverdraftForm(request.POST)
    if not form.is_valid():
        return _page(request, organization, status=400, overdraft_form=form)
    try:
        ledger.wallet_overdraft_set(
            organization_id=organization.pk,
            overdraft_limit_nano=form.cleaned_data["overdraft_limit"],
            actor=request.user,  # type: ignore[arg-type]
            reason=form.cleaned_data["reason"],
        )
    except ApplicationError as exc:
        return _refused(request, organization, "overdraft_form", form, exc)
    messages.success(request, "Overdraft limit saved.")
    return redirect("staff-billing-organization", organization_id=organization.pk)


@staff_member_required
@require_POST
def suspend(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _suspension(request, organization_id, suspend=True)


@staff_member_required
@require_POST
def restore(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _suspension(request, organization_id, suspend=False)


def _suspension(request: HttpRequest, organization_id: int, *, suspend: bool) -> HttpResponse:
    organization = _organization(organization_id)
    form = SuspensionForm(request.POST)
    if not form.is_valid():
        return _page(request, organization, status=400, suspension_form=form)
    action = postpaid_suspend_manual if suspend else postpaid_restore_manual
    try:
        action(organization_id=organization.pk, reason=form.cleaned_data["reason"], actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        return _refused(request, organization, "suspension_form", form, exc)
    messages.success(request, "Postpaid use suspended." if suspend else "Postpaid use restored.")
    return redirect("staff-billing-organization", organization_id=organization.pk)
