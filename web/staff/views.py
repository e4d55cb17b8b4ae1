"""Pages of the staff pricing console. Each view parses a form, calls one service or selector, and renders."""

from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import AuditEvent
from billing.pricing import rating, selectors, services
from billing.pricing.models import AIModel, CommitmentOffer, Plan, PriceOverride, PriceVersion
from billing.pricing.units import price_format
from core.errors import ApplicationError
from core.money import format_amount
from web.staff import forms


def _version_row(version: PriceVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "input": price_format(version.input_price_micro_per_mtok),
        "cached": price_format(version.cached_input_price_micro_per_mtok),
        "output": price_format(version.output_price_micro_per_mtok),
        "effective_from": version.effective_from,
        "note": version.note,
        "cancelled_at": version.cancelled_at,
        "created_by": version.created_by.email if version.created_by else "",
        "long_context": version.long_context_threshold_tokens,
    }


@staff_member_required
def models_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    current = {entry.slug: entry for entry in selectors.catalog(at=now)}
    scheduled: dict[int, list[dict[str, Any]]] = {}
    for version in selectors.price_versions_scheduled(now=now):
        scheduled.setdefault(version.model_id, []).append(_version_row(version))
    rows = []
    for model in AIModel.objects.order_by("slug"):
        entry = current.get(model.slug)
        rows.append(
            {
                "model": model,
                "current": None
                if entry is None
                else {
                    "input": price_format(entry.input_price_micro_per_mtok),
                    "cached": price_format(entry.cached_input_price_micro_per_mtok),
                    "output": price_format(entry.output_price_micro_per_mtok),
                    "since": entry.effective_from,
                },
                "scheduled": scheduled.get(model.pk, []),
            }
        )
    return render(request, "staff/pricing/models.html", {"rows": rows, "section": "models"})


@staff_member_required
@require_http_methods(["GET", "POST"])
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    model = AIModel.objects.filter(slug=slug).first()
    if model is None:
        raise Http404("no such model")
    form = forms.PriceVersionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.price_version_create(
                model_slug=slug,
                input_price_micro_per_mtok=data["input_price"],
                cached_input_price_micro_per_mtok=data["cached_input_price"],
                output_price_micro_per_mtok=data["output_price"],
                effective_from=data["effective_from"],
                note=data["note"],
                actor=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            when = (
                "now"
                if version.effective_from <= timezone.now()
                else f"from {version.effective_from:%Y-%m-%d %H:%M} UTC"
            )
            messages.success(request, f"New prices for {slug} take effect {when}.")
            return redirect("staff-pricing-model", slug=slug)
    versions = model.price_versions.select_related("created_by").order_by("-effective_from")
    now = timezone.now()
    return render(
        request,
        "staff/pricing/model.html",
        {
            "model": model,
            "versions": [_version_row(v) for v in versions],
            "form": form,
            "now": now,
            "section": "models",
        },
        status=_status(form),
    )


@staff_member_required
@require_POST
def version_cancel(request: HttpRequest, version_id: int) -> HttpResponse:
    version = PriceVersion.objects.select_related("model").filter(pk=version_id).first()
    if version is None:
        raise Http404("no such version")
    try:
        services.price_version_cancel(
            price_version_id=version_id, actor=request.user, reason=request.POST.get("reason", "")[:500]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"The version of {version.model.slug} from {version.effective_from:%Y-%m-%d %H:%M} is cancelled."
        )
    return redirect("staff-pricing-model", slug=version.model.slug)


def _status(form: Form) -> int:
    """400 for a form sent back with its errors (as the customer pages answer), 200 otherwise."""
    return 400 if form.is_bound and form.errors else 200


def _lines(rated: rating.Rating | None) -> list[dict[str, Any]]:
    if rated is None:
        return []
    return [line.as_dict() for line in rated.lines]


@staff_member_required
def preview(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    scheduled = [
        (v.pk, f"{v.model.slug} from {v.effective_from:%Y-%m-%d %H:%M}")
        for v in selectors.price_versions_scheduled(now=now)
    ]
    form = forms.PreviewForm(request.GET or None, scheduled=scheduled)
    result = None
    if request.GET and form.is_valid():
        data = form.cleaned_data
        draft = {
            field: data[f"draft_{field}"]
            for field in ("input_price", "cached_input_price", "output_price")
            if data[f"draft_{field}"] is not None
        }
        usage = rating.Usage(
            data["model"],
            data["input_tokens"],
            data["cached_input_tokens"],
            data["output_tokens"],
            data["service_tier"],
        )
        try:
            result = services.pricing_preview(
                organization_id=data["organization"],
                model_slug=data["model"],
                usages=[usage],
                draft={f"{k}_micro_per_mtok": v for k, v in draft.items()} or None,
                price_version_id=data["price_version"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
    context: dict[str, Any] = {"form": form, "result": result, "section": "preview"}
    if result is not None:
        row = result.rows[0]
        context |= {
            "current_lines": _lines(row.current),
            "draft_lines": _lines(row.draft),
            "current_total": format_amount(result.current_total_nano),
            "draft_total": None if result.draft_total_nano is None else format_amount(result.draft_total_nano),
        }
    return render(request, "staff/pricing/preview.html", context, status=_status(form))


@staff_member_required
@require_http_methods(["GET", "POST"])
def plans(request: HttpRequest) -> HttpResponse:
    form = forms.PlanForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.plan_create(
                slug=data["slug"],
                name=data["name"],
                interval=data["interval"],
                fee_nano=data["fee"],
                included_credit_nano=data["included_credit"] or 0,
                usage_discount_bps=data["usage_discount_bps"],
                requests_per_minute=data["requests_per_minute"],
                tokens_per_minute=data["tokens_per_minute"],
                allowances=data["allowances"],
                actor=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Plan {data['slug']} created.")
            return redirect("staff-pricing-plans")
    listed = Plan.objects.prefetch_related("allowances__model")
    context = {"plans": listed, "form": form, "section": "plans"}
    return render(request, "staff/pricing/plans.html", context, status=_status(form))


@staff_member_required
@require_POST
def plan_offer(request: HttpRequest, slug: str) -> HttpResponse:
    """Offer a plan to new subscribers again, or retire it (its subscribers keep it)."""
    try:
        plan = services.plan_update(plan_slug=slug, is_active=request.POST.get("offer") == "yes", actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Plan {slug} is {'offered' if plan.is_active else 'retired'}.")
    return redirect("staff-pricing-plans")


@staff_member_required
@require_POST
def offer_toggle(request: HttpRequest, offer_id: int) -> HttpResponse:
    """Offer a commitment offer again, or withdraw it (purchases keep their terms)."""
    try:
        offer = services.commitment_offer_update(
            offer_id=offer_id, is_active=request.POST.get("offer") == "yes", actor=request.user
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Offer {offer.name} is {'offered' if offer.is_active else 'withdrawn'}.")
    return redirect("staff-pricing-offers")


@staff_member_required
@require_http_methods(["GET", "POST"])
def offers(request: HttpRequest) -> HttpResponse:
    form = forms.OfferForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.commitment_offer_create(
                name=data["name"],
                model=data["model"] or None,
                group=data["group"] or None,
                committed_tokens_per_month=data["committed_tokens_per_month"],
                reserved_tokens_per_minute=data["reserved_tokens_per_minute"],
                term_months=data["term_months"],
                discount_bps=data["discount_bps"],
                payment=data["payment"],
                blended_price_micro_per_mtok=data["blended_price"],
                actor=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Offer {data['name']} created.")
            return redirect("staff-pricing-offers")
    rows = [
        {
            "offer": offer,
            "monthly_fee": services.offer_monthly_fee_nano(offer),
            "blended": price_format(offer.blended_price_micro_per_mtok),
        }
        for offer in CommitmentOffer.objects.select_related("model")
    ]
    context = {"rows": rows, "form": form, "section": "offers"}
    return render(request, "staff/pricing/offers.html", context, status=_status(form))


@staff_member_required
@require_http_methods(["GET", "POST"])
def overrides(request: HttpRequest) -> HttpResponse:
    form = forms.OverrideForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.override_create(
                organization_id=data["organization"],
                model=data["model"] or None,
                group=data["group"] or None,
                discount_bps=data["discount_bps"],
                input_price_micro_per_mtok=data["input_price"],
                cached_input_price_micro_per_mtok=data["cached_input_price"],
                output_price_micro_per_mtok=data["output_price"],
                effective_until=data["effective_until"],
                reason=data["reason"],
                actor=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Negotiated price recorded.")
            return redirect("staff-pricing-overrides")
    listed = PriceOverride.objects.select_related("organization", "model", "created_by")[:200]
    return render(
        request,
        "staff/pricing/overrides.html",
        {"overrides": listed, "form": form, "now": timezone.now(), "section": "overrides"},
        status=_status(form),
    )


@staff_member_required
@require_POST
def override_end(request: HttpRequest, override_id: int) -> HttpResponse:
    form = forms.ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the negotiated price ends.")
        return redirect("staff-pricing-overrides")
    try:
        services.override_end(override_id=override_id, reason=form.cleaned_data["reason"], actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The negotiated price has ended.")
    return redirect("staff-pricing-overrides")


@staff_member_required
def audit(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.filter(action__startswith="pricing.").order_by("-created_at", "-id")[:200]
    return render(request, "staff/pricing/audit.html", {"events": events, "section": "audit"})
