"""Staff invoices API: list and detail (read-only), and the billing profile staff set."""

import pytest
import time_machine
from django.urls import reverse

from accounts.models import AuditEvent
from billing.invoicing.models import BillingProfile
from billing.pricing import services as pricing
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.billing.invoicing.conftest import at
from tests.billing.invoicing.test_close import october


@pytest.fixture
def closed(db):
    pricing.price_book_seed()
    org = OrganizationFactory(name="Acme")
    october(org)
    from billing.invoicing import services

    with time_machine.travel(at("2026-11-01 01:00:01")):
        return services.invoice_close(organization_id=org.pk, period_start=at("2026-10-01 00:00"))


def test_staff_list_and_read_invoices_with_their_lines(staff_api, closed):
    listed = staff_api.get(reverse("staff-invoices"), {"organization": closed.organization_id}).json()
    assert [(i["number"], i["total"], i["total_minor"]) for i in listed["results"]] == [("INV-2026-000001", "0.15", 15)]
    detail = staff_api.get(reverse("staff-invoice", args=[closed.pk])).json()
    assert (detail["charges"], detail["credit_applied"], detail["carry_out"]) == ("0.75045", "-0.60", "0.00045")
    usage = [line for line in detail["lines"] if line["kind"] == "usage"]
    assert {(line["model"], line["token_kind"], line["amount"]) for line in usage} >= {("gpt-4o", "input", "0.40")}
    assert all(line["usage_ids"] for line in usage)
    credit = [line for line in detail["lines"] if line["kind"] == "credit_paid"]
    assert credit[0]["amount_nano"] == -500_000_000 and credit[0]["draw_ids"]


def test_the_invoices_api_is_read_only_and_for_staff(staff_api, client, closed):
    assert staff_api.post(reverse("staff-invoices"), {}).status_code == 405
    assert staff_api.delete(reverse("staff-invoice", args=[closed.pk])).status_code == 405
    customer = UserFactory(username="eve@example.com")
    client.force_login(customer)
    assert client.get(reverse("staff-invoice", args=[closed.pk])).status_code == 403


@pytest.mark.parametrize(("query", "param"), [({"status": "open"}, "status"), ({"organization": "x"}, "organization")])
def test_bad_filters_are_a_400_naming_the_parameter(staff_api, db, query, param):
    response = staff_api.get(reverse("staff-invoices"), query)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_an_unknown_invoice_is_a_404(staff_api, db):
    assert staff_api.get(reverse("staff-invoice", args=[987654])).status_code == 404


def test_staff_set_the_anchor_day_and_net_terms(staff_api, db):
    org = OrganizationFactory(name="Acme")
    url = reverse("staff-billing-profile", args=[org.pk])
    assert staff_api.get(url).json() == {
        "organization_id": org.pk,
        "anchor_day": 1,
        "collection_method": "charge_automatically",
        "days_until_due": 30,
        "progressive_threshold": None,
    }
    body = {
        "anchor_day": 15,
        "collection_method": "send_invoice",
        "days_until_due": 45,
        "progressive_threshold": "50.00",
    }
    assert staff_api.put(url, body, format="json").json() == {"organization_id": org.pk, **body}
    profile = BillingProfile.objects.get(organization=org)
    assert (profile.anchor_day, profile.progressive_threshold_nano) == (15, 50 * 10**9)
    assert AuditEvent.objects.filter(action="invoicing.billing_profile.set", organization_id=org.pk).exists()
    bad = staff_api.put(url, {**body, "anchor_day": 31}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "anchor_day"
