"""Pages of the staff pricing console. Each view parses a form, calls one service or selector, and renders."""

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import audit_events
from billing.pricing import rating, selectors, services
from billing.pricing.errors import StaleConfirmation
from billing.pricing.models import AIModel, CommitmentOffer, Plan, PriceOverride, PriceVersion
from billing.pricing.units import price_format
from core.errors import ApplicationError, ErrorKind
from core.money import format_amount
from web.staff import audit_text, forms


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


def _model_page(
    request: HttpRequest, model: AIModel, form: forms.PriceVersionForm, *, status: int | None = None
) -> HttpResponse:
    versions = model.price_versions.select_related("created_by").order_by("-effective_from")
    context = {
        "model": model,
        "versions": [_version_row(v) for v in versions],
        "form": form,
        "now": timezone.now(),
        "section": "models",
    }
    return render(request, "staff/pricing/model.html", context, status=status or _status(form))


def _model_or_404(slug: str) -> AIModel:
    model = AIModel.objects.filter(slug=slug).first()
    if model is None:
        raise Http404("no such model")
    return model


def _version_arguments(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "input_price_micro_per_mtok": data["input_price"],
        "cached_input_price_micro_per_mtok": data["cached_input_price"],
        "output_price_micro_per_mtok": data["output_price"],
        "reasoning_price_micro_per_mtok": data.get("reasoning_price"),
        "effective_from": data["effective_from"],
        "note": data["note"],
    }


PRICE_KINDS = (
    ("Input", "input_price_micro_per_mtok"),
    ("Cached input", "cached_input_price_micro_per_mtok"),
    ("Output", "output_price_micro_per_mtok"),
)


def _change_percent(old: int | None, new: int) -> str:
    if old is None:
        return "new"
    if old == new:
        return "unchanged"
    if old == 0:
        return "from free"
    # Decimal, not float, even for display (the rule for anything computed from money).
    return f"{(Decimal(new - old) * 100 / old).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):+}%"


def _confirm_page(
    request: HttpRequest, review: services.PriceVersionReview, data: dict[str, Any], *, error: str = "", status: int
) -> HttpResponse:
    """The confirmation step: the price in effect at the start beside the new one, per token kind."""
    replaces = review.replaces
    rows = []
    for label, field in PRICE_KINDS:
        old = getattr(replaces, field) if replaces else None
        new = review.values[field]
        hint = ""
        if field == "cached_input_price_micro_per_mtok" and data["cached_input_price"] is None:
            hint = "The cached input price was left empty, so it is the input price (no caching discount)."
        rows.append(
            {
                "kind": label,
                "current": "—" if old is None else price_format(old),
                "new": price_format(new),
                "change": _change_percent(old, new),
                "hint": hint,
            }
        )
    # Reasoning: no price of its own means the output price (the row says so rather than showing a number).
    old_reasoning = replaces.reasoning_price_micro_per_mtok if replaces else None
    new_reasoning = review.values.get("reasoning_price_micro_per_mtok")
    rows.append(
        {
            "kind": "Reasoning",
            "current": "—"
            if replaces is None
            else ("output price" if old_reasoning is None else price_format(old_reasoning)),
            "new": "output price" if new_reasoning is None else price_format(new_reasoning),
            "change": ""
            if new_reasoning is None or old_reasoning is None
            else _change_percent(old_reasoning, new_reasoning),
            "hint": "",
        }
    )
    hidden = {
        "input_price": price_format(review.values["input_price_micro_per_mtok"]),
        # Sent back as typed: empty stays empty (the input price), so "Change" shows the form as it was filled.
        "cached_input_price": "" if data["cached_input_price"] is None else price_format(data["cached_input_price"]),
        "output_price": price_format(review.values["output_price_micro_per_mtok"]),
        "reasoning_price": "" if new_reasoning is None else price_format(new_reasoning),
        "start": "now" if review.starts_now else "at",
        "effective_from": "" if review.starts_now else f"{review.effective_from:%Y-%m-%d %H:%M:%S}",
        "note": data["note"],
        "confirmed_replaces": replaces.pk if replaces else services.REPLACES_NOTHING,
    }
    context = {
        "model": review.model,
        "review": review,
        "rows": rows,
        "hidden": hidden,
        "note": data["note"],
        "error": error,
        # The Preview page rates the draft prices for an organization (opened beside this page).
        "preview_organizations": forms.organization_choices(),
        "preview_draft": {
            "draft_input_price": hidden["input_price"],
            "draft_cached_input_price": price_format(review.values["cached_input_price_micro_per_mtok"]),
            "draft_output_price": hidden["output_price"],
        },
        "section": "models",
    }
    return render(request, "staff/pricing/confirm.html", context, status=status)


@staff_member_required
@require_http_methods(["GET", "POST"])
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A model's versions, and step one of publishing a price: the form, checked and shown for confirmation.
    Nothing is written here; the confirmation page publishes (version_publish)."""
    model = _model_or_404(slug)
    form = forms.PriceVersionForm(request.POST or None)
    # "edit": back from the confirmation page to change the values, shown in the form again.
    if request.method == "POST" and "edit" not in request.POST and form.is_valid():
        try:
            review = services.price_version_review(model_slug=slug, **_version_arguments(form.cleaned_data))
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return _confirm_page(request, review, form.cleaned_data, status=200)
    return _model_page(request, model, form)


@staff_member_required
@require_POST
def version_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """Step two: publish what the confirmation page showed, unless the prices it replaces changed meanwhile."""
    model = _model_or_404(slug)
    form = forms.PublishForm(request.POST)
    if not form.is_valid():
        return _model_page(request, model, form)
    data = form.cleaned_data
    try:
        version = services.price_version_create(
            model_slug=slug,
            actor=request.user,
            confirmed_replaces_id=data["confirmed_replaces"],
            **_version_arguments(data),
        )
    except StaleConfirmation as exc:
        # Show the change again against what is in effect now; nothing was written.
        try:
            review = services.price_version_review(model_slug=slug, **_version_arguments(data))
        except ApplicationError as again:
            form.add_error(None, f"{exc.message} {again.message}")
            return _model_page(request, model, form, status=409)
        return _confirm_page(request, review, data, error=exc.message, status=409)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return _model_page(request, model, form, status=409 if exc.kind == ErrorKind.CONFLICT else 400)
    when = "now" if version.effective_from <= timezone.now() else f"from {version.effective_from:%Y-%m-%d %H:%M} UTC"
    messages.success(request, f"New prices for {slug} take effect {when}.")
    return redirect("staff-pricing-model", slug=slug)


@staff_member_required
@require_POST
def version_cancel(request: HttpRequest, version_id: int) -> HttpResponse:
    version = PriceVersion.objects.select_related("model").filter(pk=version_id).first()
    if version is None:
        raise Http404("no such version")
    form = forms.ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the scheduled version is cancelled.")
        return redirect("staff-pricing-model", slug=version.model.slug)
    try:
        services.price_version_cancel(
            price_version_id=version_id, actor=request.user, reason=form.cleaned_data["reason"]
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


AUDIT_PAGE_SIZE = 50


@staff_member_required
def audit(request: HttpRequest) -> HttpResponse:
    """The audit log of pricing changes, newest first, filtered by organization, model and who made them."""
    form = forms.AuditFilterForm(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "organization_id": data["organization"],
            "model_slug": data["model"],
            "actor_label": data["actor"],
        }
    events = audit_events(action_prefix="pricing.", **filters)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"event": event, "changes": audit_text.change_rows(event)} for event in page.object_list]
    context = {"form": form, "page": page, "rows": rows, "section": "audit"}
    return render(request, "staff/pricing/audit.html", context, status=_status(form))
