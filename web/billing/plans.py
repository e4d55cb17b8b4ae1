"""Plans and commitments, self-service: what staff offer, the organization's plan and commitments now, and
preview-then-confirm pages to subscribe, change plan or buy a commitment.

Every member sees the page; owners and billing admins act. A preview page carries the quote it showed in a
signed form field, and the confirmation accepts exactly that quote (billing.pricing.services.quotes), so what
was previewed is what is charged, and a stale form is refused with nothing written.
"""

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.ids import is_id_text
from accounts.permissions import Capability
from api.errors import http_of
from billing.ledger import selectors as ledger_selectors
from billing.pricing import selectors, services
from billing.pricing.models import CommitmentOffer, Plan
from core.errors import ApplicationError
from web.billing.permissions import BILLING_ROLES
from web.context import membership_required
from web.views.common import can, membership_of

PLAN_SALT = "web.billing.plans.plan-quote"
COMMITMENT_SALT = "web.billing.plans.commitment-quote"
DATETIMES = ("at", "period_start", "period_end")
ALTERED = "This confirmation form was altered or is not from this site; preview again and confirm from that page."


class FormRefused(ApplicationError):
    """A confirmation form that cannot be read (missing, altered, for another organization): a 400."""

    code = "invalid_confirmation"


def _page(request: HttpRequest, *, error: ApplicationError | None = None) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    context: dict[str, Any] = {
        "state": selectors.plan_state(organization_id=organization_id, now=timezone.now()),
        "plans": list(selectors.plans_offered()),
        "offers": list(selectors.offers_offered()),
        "balance": ledger_selectors.wallet_balance(organization_id=organization_id),
        "can_manage": can(request, Capability.MANAGE_BILLING),
        "error": error.message if error is not None else None,
    }
    return render(request, "billing/plans.html", context, status=http_of(error)[0] if error is not None else 200)


@require_GET
@membership_required()
def plans_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


# --- plans -------------------------------------------------------------------------------------------------------


def _plan_token(quote: services.PlanQuote) -> str:
    fields = asdict(quote) | {name: getattr(quote, name).isoformat() for name in DATETIMES}
    return signing.dumps(fields, salt=PLAN_SALT)


def _plan_quote_of(token: str, organization_id: int) -> services.PlanQuote:
    try:
        data = signing.loads(token, salt=PLAN_SALT)
        quote = services.PlanQuote(**{**data, **{name: datetime.fromisoformat(data[name]) for name in DATETIMES}})
    except (signing.BadSignature, TypeError, KeyError, ValueError):
        raise FormRefused(ALTERED, param="quote") from None
    if quote.organization_id != organization_id:
        # Made for another organization the user also belongs to (the current one was switched meanwhile).
        raise FormRefused(
            "This preview was made for another organization; switch back to it, or preview again here.",
            param="quote",
        )
    return quote


@require_GET
@membership_required(*BILLING_ROLES)
def plan_preview(request: HttpRequest, plan_slug: str) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    try:
        quote = services.plan_quote(organization_id=organization_id, plan_slug=plan_slug)
    except ApplicationError as exc:
        return _page(request, error=exc)
    plans = Plan.objects.in_bulk([quote.plan_slug, quote.from_plan_slug or ""], field_name="slug")
    context = {
        "quote": quote,
        "plan": plans[quote.plan_slug],
        "from_plan": plans.get(quote.from_plan_slug or ""),
        "token": _plan_token(quote),
        "balance": ledger_selectors.wallet_balance(organization_id=organization_id),
        "refund_nano": -quote.net_nano,
    }
    return render(request, "billing/plan_preview.html", context)


@require_POST
@membership_required(*BILLING_ROLES)
def plan_confirm(request: HttpRequest) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    try:
        quote = _plan_quote_of(request.POST.get("quote", ""), organization_id)
        services.plan_quote_accept(quote=quote, actor=request.user)
    except ApplicationError as exc:
        return _page(request, error=exc)
    if not quote.is_change:
        messages.success(request, f"Subscribed to the {quote.plan_slug} plan.")
    else:
        messages.success(request, f"Your plan changed from {quote.from_plan_slug} to {quote.plan_slug}.")
    return HttpResponseRedirect(reverse("billing_plans"))


# --- commitments -------------------------------------------------------------------------------------------------


def _offer_id(raw: str) -> int:
    """An offer id from the URL; anything that is not one reads exactly like an unknown id."""
    if not is_id_text(raw):
        raise Http404("No such commitment offer.")
    return int(raw)


def _commitment_quote_of(token: str) -> services.CommitmentQuote:
    try:
        return services.CommitmentQuote(**signing.loads(token, salt=COMMITMENT_SALT))
    except (signing.BadSignature, TypeError):
        raise FormRefused(ALTERED, param="quote") from None


def _idempotency_key(raw: str, organization_id: int) -> str:
    """The form's key (made when the preview was shown), namespaced by the organization and this page."""
    try:
        key = uuid.UUID(raw)
    except ValueError:
        raise FormRefused(ALTERED, param="idempotency_key") from None
    return f"billing-page:{organization_id}:{key}"


@require_GET
@membership_required(*BILLING_ROLES)
def commitment_preview(request: HttpRequest, offer_id: str) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    try:
        quote = services.commitment_quote(offer_id=_offer_id(offer_id))
    except ApplicationError as exc:
        return _page(request, error=exc)
    context = {
        "quote": quote,
        "offer": CommitmentOffer.objects.select_related("model").get(pk=quote.offer_id),
        "token": signing.dumps(asdict(quote), salt=COMMITMENT_SALT),
        "idempotency_key": uuid.uuid4(),
        "balance": ledger_selectors.wallet_balance(organization_id=organization_id),
    }
    return render(request, "billing/commitment_preview.html", context)


@require_POST
@membership_required(*BILLING_ROLES)
def commitment_confirm(request: HttpRequest) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    try:
        purchase = services.commitment_quote_accept(
            organization_id=organization_id,
            quote=_commitment_quote_of(request.POST.get("quote", "")),
            idempotency_key=_idempotency_key(request.POST.get("idempotency_key", ""), organization_id),
            actor=request.user,
        )
    except ApplicationError as exc:
        return _page(request, error=exc)
    if purchase.created:
        messages.success(request, f"Commitment #{purchase.commitment.pk} bought.")
    else:
        messages.info(request, f"This form had already bought commitment #{purchase.commitment.pk}; nothing more.")
    return HttpResponseRedirect(reverse("billing_plans"))
