"""/budgets/: the organization's budgets with what each spent, holds and has left in its current period; a form to
add one (for the organization, a workflow or an API key) and, per budget, a page to change or remove it.
Everyone sees them; who changes which is web.billing.budgets_api.budget_change_allowed."""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.models import ApiKey
from billing.metering.budgets import selectors, services
from billing.metering.errors import BudgetNotFound
from billing.metering.models import DEFAULT_THRESHOLDS, BudgetMode, BudgetPeriod, BudgetScope
from core.errors import ApplicationError
from core.money import format_amount
from web.billing.budgets_api import budget_change_allowed
from web.context import membership_required
from web.forms import amount_clean, form_error_from
from web.views.common import capabilities, membership_of

ERROR_FIELDS = {"amount": "amount", "api_key_id": "api_key", "thresholds": "thresholds", "workflow": "workflow"}


class BudgetChangeForm(forms.Form):
    amount = forms.CharField(max_length=30, help_text="Per period, in the organization's currency.")
    period = forms.ChoiceField(choices=BudgetPeriod.choices, help_text="Calendar periods in UTC; weeks start Monday.")
    mode = forms.ChoiceField(
        choices=BudgetMode.choices,
        help_text="Hard: calls that could take spending past the amount are refused (402 budget_exceeded).",
    )
    thresholds = forms.CharField(
        max_length=60,
        required=False,
        initial=", ".join(str(t) for t in DEFAULT_THRESHOLDS),
        help_text="Percentages of the amount at which owners and billing admins are emailed, once per period.",
    )

    def clean_amount(self) -> int:
        return amount_clean(self.cleaned_data["amount"], field_label="Amount")

    def clean_thresholds(self) -> list[int]:
        parts = [part.strip().rstrip("%") for part in self.cleaned_data["thresholds"].split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            raise forms.ValidationError("Thresholds are whole percentages separated by commas, e.g. 50, 80, 100.")
        return [int(part) for part in parts]


class BudgetCreateForm(BudgetChangeForm):
    scope = forms.ChoiceField(choices=BudgetScope.choices, label="For")
    workflow = forms.CharField(max_length=100, required=False, help_text="The workflow tag, for a workflow budget.")
    api_key = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="API key")

    field_order = ["scope", "workflow", "api_key", "amount", "period", "mode", "thresholds"]

    def __init__(self, *args: object, organization_id: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        keys = ApiKey.objects.filter(organization_id=organization_id, revoked_at__isnull=True).order_by("name")
        self.fields["api_key"].choices = [("", "—")] + [(key.pk, key.name) for key in keys]  # type: ignore[attr-defined]


def _deny_unless(request: HttpRequest, scope: str) -> None:
    if not budget_change_allowed(membership_of(request), scope):
        raise PermissionDenied("Your role does not allow changing this budget.")


@membership_required()
@require_http_methods(["GET", "POST"])
def budget_list(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    organization = membership.organization
    form = BudgetCreateForm(request.POST or None, organization_id=organization.pk)
    if request.method == "POST":
        _deny_unless(request, request.POST.get("scope", ""))
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.budget_create(
                    organization_id=organization.pk,
                    actor=request.user,
                    scope=data["scope"],
                    workflow=data["workflow"],
                    api_key_id=data["api_key"],
                    amount_nano=data["amount"],
                    period=data["period"],
                    mode=data["mode"],
                    thresholds=data["thresholds"],
                )
            except ApplicationError as error:
                form_error_from(form, error, ERROR_FIELDS)
            else:
                messages.success(request, "Added the budget.")
                return HttpResponseRedirect("/budgets/")
    context = {
        "states": selectors.budget_list(organization_id=organization.pk),
        "form": form,
        "currency": organization.currency,
        "can": capabilities(request),
        "can_add": budget_change_allowed(membership, BudgetScope.WORKFLOW),
    }
    return render(request, "web/budgets/list.html", context, status=400 if form.is_bound else 200)


@membership_required()
@require_http_methods(["GET", "POST"])
def budget_detail(request: HttpRequest, budget_id: int) -> HttpResponse:
    organization = membership_of(request).organization
    try:
        state = selectors.budget_get(organization_id=organization.pk, budget_id=budget_id)
    except BudgetNotFound:
        raise Http404("budget not found") from None
    budget = state.budget
    editable = budget_change_allowed(membership_of(request), budget.scope)
    initial = {
        "amount": format_amount(budget.amount_nano),
        "period": budget.period,
        "mode": budget.mode,
        "thresholds": ", ".join(str(t) for t in budget.thresholds),
    }
    form = BudgetChangeForm(request.POST or None, initial=initial)
    if request.method == "POST":
        _deny_unless(request, budget.scope)
        if "delete" in request.POST:
            services.budget_delete(organization_id=organization.pk, budget_id=budget.pk, actor=request.user)
            messages.success(request, "Removed the budget.")
            return HttpResponseRedirect("/budgets/")
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.budget_update(
                    organization_id=organization.pk,
                    budget_id=budget.pk,
                    actor=request.user,
                    amount_nano=data["amount"],
                    period=data["period"],
                    mode=data["mode"],
                    thresholds=data["thresholds"],
                )
            except ApplicationError as error:
                form_error_from(form, error, ERROR_FIELDS)
            else:
                messages.success(request, "Saved the budget.")
                return HttpResponseRedirect("/budgets/")
    context = {"state": state, "form": form, "currency": organization.currency, "editable": editable}
    return render(request, "web/budgets/detail.html", context, status=400 if form.is_bound else 200)
