"""/billing/details/: who invoices are addressed to (legal name, address, tax ID, billing emails). Owners and
billing admins only, as every billing page."""

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from billing.invoicing import selectors
from billing.invoicing.services.details import billing_details_set
from billing.invoicing.taxids import TAX_ID_TYPES
from core.errors import ApplicationError
from web.billing.forms import BillingDetailsForm
from web.billing.permissions import BILLING_ROLES
from web.context import membership_required
from web.forms import form_error_from


@require_http_methods(["GET", "POST"])
@membership_required(*BILLING_ROLES)
def billing_details_page(request: HttpRequest) -> HttpResponse:
    organization_id = int(request.membership.organization_id)  # type: ignore[attr-defined]
    details = selectors.billing_details_get(organization_id=organization_id)
    if request.method == "POST":
        form = BillingDetailsForm(request.POST)
        if form.is_valid():
            try:
                billing_details_set(
                    organization_id=organization_id,
                    actor=request.user,  # type: ignore[arg-type]
                    **form.cleaned_data,
                )
            except ApplicationError as exc:
                form_error_from(form, exc)
            else:
                messages.success(request, "Billing details saved. The next invoice is addressed to them.")
                return HttpResponseRedirect(reverse("billing_details"))
    else:
        initial: dict[str, Any] = {}
        if details is not None:
            initial = {
                "legal_name": details.legal_name,
                "address_line1": details.address_line1,
                "address_line2": details.address_line2,
                "city": details.city,
                "postal_code": details.postal_code,
                "region": details.region,
                "country": details.country,
                "tax_id_type": details.tax_id_type,
                "tax_id_value": details.tax_id_value,
                "emails": "\n".join(details.emails),
            }
        form = BillingDetailsForm(initial=initial)
    context = {
        "form": form,
        "details": details,
        "tax_id_label": TAX_ID_TYPES[details.tax_id_type].label if details and details.tax_id_type else "",
        "recipients": selectors.billing_recipients(organization_id=organization_id),
    }
    return render(request, "billing/details.html", context, status=400 if form.is_bound else 200)
