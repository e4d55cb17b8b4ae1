"""Staff API: an invoice shows who it was billed to (its billed_to snapshot), and an organization's billing details
read as the customer set them."""

import pytest
import time_machine
from django.urls import reverse

from billing.invoicing import services
from billing.invoicing.services.details import billing_details_set
from billing.pricing import services as pricing
from tests.accounts.factories import OrganizationFactory
from tests.billing.invoicing.conftest import at
from tests.billing.invoicing.test_close import october


@pytest.fixture
def org(db):
    pricing.price_book_seed()
    return OrganizationFactory(name="Acme")


def details(org, **changes):
    values = {
        "legal_name": "Acme Ltd",
        "address_line1": "1 High Street",
        "address_line2": "",
        "city": "London",
        "postal_code": "EC1A 1BB",
        "region": "",
        "country": "GB",
        "tax_id_type": "gb_vat",
        "tax_id_value": "980780684",
        "emails": ["ap@acme.example"],
    }
    return billing_details_set(organization_id=org.pk, actor="test", **(values | changes))


def test_an_invoice_reads_with_who_it_was_billed_to(staff_api, org):
    details(org)
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=at("2026-10-01 00:00"))
    details(org, legal_name="Acme Group Ltd")
    detail = staff_api.get(reverse("staff-invoice", args=[invoice.pk])).json()
    assert detail["billed_to"] == {
        "legal_name": "Acme Ltd",
        "address": {
            "line1": "1 High Street",
            "line2": "",
            "city": "London",
            "postal_code": "EC1A 1BB",
            "region": "",
            "country": "GB",
        },
        "tax_id": {"type": "gb_vat", "value": "GB980780684"},
        "emails": ["ap@acme.example"],
    }
    listed = staff_api.get(reverse("staff-invoices"), {"organization": org.pk}).json()
    assert listed["results"][0]["billed_to"]["legal_name"] == "Acme Ltd"


def test_staff_read_an_organizations_billing_details(staff_api, client, org):
    url = reverse("staff-billing-details", args=[org.pk])
    missing = staff_api.get(url)
    assert missing.status_code == 404 and "no billing details" in missing.json()["error"]["message"]
    details(org, legal_name="Acme Group Ltd")
    body = staff_api.get(url).json()
    assert (body["legal_name"], body["tax_id_value"], body["version"], body["stripe_synced_version"]) == (
        "Acme Group Ltd",
        "GB980780684",
        1,
        0,
    )
    assert staff_api.get(reverse("staff-billing-details", args=[999999])).status_code == 404
    assert staff_api.put(url, {}).status_code == 405
    assert client.get(url).status_code in (401, 403)
