"""Server-rendered billing pages: top up, auto top-up, payment methods, receipts. Owners and billing admins only."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts.ids import is_id_text
from billing.ledger import selectors as ledger_selectors
from billing.payments import selectors, services
from billing.payments.errors import NotFound
from billing.payments.models import TopUp
from billing.payments.stripe_client import stripe_js_url
from core.errors import ApplicationError
from core.money import format_amount
from web.billing.forms import AutoTopUpForm
from web.billing.permissions import BILLING_ROLES
from web.context import membership_required


def _organization_id(request: HttpRequest) -> int:
    return int(request.membership.organization_id)  # type: ignore[attr-defined]


def _stripe_config(**urls: str) -> dict[str, Any]:
    """What the page's script needs (rendered with json_script)."""
    return {"publishableKey": settings.STRIPE_PUBLISHABLE_KEY, "urls": urls}


@require_GET
@membership_required(*BILLING_ROLES)
def top_up_page(request: HttpRequest) -> HttpResponse:
    organization_id = _organization_id(request)
    balance = ledger_selectors.wallet_balance(organization_id=organization_id)
    context: dict[str, Any] = {
        "balance": balance,
        "min_amount": format_amount(settings.TOPUP_MIN_AMOUNT_NANO),
        "max_amount": format_amount(settings.TOPUP_MAX_AMOUNT_NANO),
        "recent": _recent(organization_id),
        "saved_card": selectors.saved_card(organization_id=organization_id),
        "stripe_js_url": stripe_js_url(),
        "stripe_config": _stripe_config(start=reverse("billing_top_up_start"), recent=reverse("billing_top_up_recent")),
    }
    return render(request, "billing/top_up.html", context)


@require_GET
@membership_required(*BILLING_ROLES)
def top_up_recent(request: HttpRequest) -> HttpResponse:
    """The "Recent top-ups" panel alone: the top-up page's script swaps it in after each payment step."""
    return render(request, "billing/_recent_top_ups.html", {"recent": _recent(_organization_id(request))})


def _recent(organization_id: int) -> list[TopUp]:
    # Attempts left unfinished past TOPUP_ABANDON_AFTER_SECONDS are settled before they are shown, so the list never
    # reads "Waiting for ..." after that, whether or not the beat sweep ran yet.
    services.topups_expire(organization_id=organization_id)
    return selectors.topups_recent(organization_id=organization_id)


@require_http_methods(["GET", "POST"])
@membership_required(*BILLING_ROLES)
def auto_top_up_page(request: HttpRequest) -> HttpResponse:
    organization_id = _organization_id(request)
    state = selectors.auto_topup_state(organization_id=organization_id)
    config = state.config
    if request.method == "POST":
        if request.POST.get("action") == "remove_card":
            _card_remove(request, organization_id)
            return HttpResponseRedirect(reverse("billing_auto_top_up"))
        form = AutoTopUpForm(request.POST)
        if form.is_valid():
            try:
                services.auto_topup_update(
                    organization_id=organization_id,
                    enabled=form.cleaned_data["enabled"],
                    threshold_nano=form.cleaned_data["threshold"],
                    amount_nano=form.cleaned_data["amount"],
                    daily_cap_nano=form.cleaned_data["daily_cap"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                field = {"daily_cap": "daily_cap", "amount": "amount", "threshold": "threshold"}.get(exc.param or "")
                form.add_error(field, exc.message)
            else:
                messages.success(request, "Auto top-up settings saved.")
                return HttpResponseRedirect(reverse("billing_auto_top_up"))
    else:
        # The box is ticked exactly when auto top-up is on (the status above reads "On"): suggested amounts for a
        # first set-up, never a pre-ticked box.
        initial: dict[str, Any] = {"threshold": "5.00", "amount": "20.00", "daily_cap": "100.00", "enabled": False}
        if config is not None and config.amount_nano:
            initial = {
                "enabled": config.enabled,
                "threshold": format_amount(config.threshold_nano),
                "amount": format_amount(config.amount_nano),
                "daily_cap": format_amount(config.daily_cap_nano),
            }
        form = AutoTopUpForm(initial=initial)
    context: dict[str, Any] = {
        "form": form,
        "state": state,
        "config": config,
        "balance": ledger_selectors.wallet_balance(organization_id=organization_id),
        "min_amount": format_amount(settings.TOPUP_MIN_AMOUNT_NANO),
        "max_amount": format_amount(settings.TOPUP_MAX_AMOUNT_NANO),
        "stripe_js_url": stripe_js_url(),
        "stripe_config": _stripe_config(
            card=reverse("billing_auto_top_up_card"), confirm=reverse("billing_auto_top_up_card_confirm")
        ),
    }
    return render(request, "billing/auto_top_up.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@membership_required(*BILLING_ROLES)
def payment_methods_page(request: HttpRequest) -> HttpResponse:
    """The saved card: see it, add or replace it (a SetupIntent confirmed in the page), remove it."""
    organization_id = _organization_id(request)
    if request.method == "POST":
        if request.POST.get("action") != "remove_card":
            return HttpResponse("Unknown action: send action=remove_card.", status=400, content_type="text/plain")
        _card_remove(request, organization_id)
        return HttpResponseRedirect(reverse("billing_payment_methods"))
    context: dict[str, Any] = {
        "saved_card": selectors.saved_card(organization_id=organization_id),
        "auto_top_up": selectors.auto_topup_enabled(organization_id=organization_id),
        "stripe_js_url": stripe_js_url(),
        "stripe_config": _stripe_config(
            card=reverse("billing_auto_top_up_card"), confirm=reverse("billing_auto_top_up_card_confirm")
        ),
    }
    return render(request, "billing/payment_methods.html", context)


def _card_remove(request: HttpRequest, organization_id: int) -> None:
    """Remove the saved card (detached at Stripe) and say what that turned off."""
    try:
        removed = services.saved_card_remove(organization_id=organization_id, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, f"The card was not removed: {exc.message}")
        return
    if removed.auto_top_up_turned_off:
        messages.warning(
            request,
            "The saved card was removed. Auto top-up was turned off, because it charges the saved card: "
            "add a card and turn it on again to keep topping up automatically.",
        )
    else:
        messages.success(request, "The saved card was removed. Nothing will be charged to it any more.")


@require_GET
@membership_required(*BILLING_ROLES)
def receipts_page(request: HttpRequest) -> HttpResponse:
    receipts = selectors.receipts_list(organization_id=_organization_id(request))[:500]
    return render(request, "billing/receipts.html", {"receipts": receipts})


@require_GET
@membership_required(*BILLING_ROLES)
def receipt_page(request: HttpRequest, top_up_id: str) -> HttpResponse:
    if not is_id_text(top_up_id):
        raise Http404("No such receipt.")
    try:
        receipt = selectors.receipt_get(organization_id=_organization_id(request), top_up_id=int(top_up_id))
    except NotFound:
        raise Http404("No such receipt.") from None
    return render(
        request, "billing/receipt.html", {"receipt": receipt, "refunds": selectors.receipt_refunds(top_up=receipt)}
    )
