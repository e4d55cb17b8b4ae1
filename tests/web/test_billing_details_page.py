"""/billing/details/: owners and billing admins see and change who invoices are addressed to; developers and
viewers are refused; bad input answers the form again with the error (400) and writes nothing."""

import pytest

from accounts.models import AuditEvent
from billing.invoicing.models import BillingDetails

FORM = {
    "legal_name": "Org A Inc.",
    "address_line1": "1 Main Street",
    "address_line2": "Suite 5",
    "city": "Springfield",
    "postal_code": "12345",
    "region": "IL",
    "country": "US",
    "tax_id_type": "us_ein",
    "tax_id_value": "042103594",
    "emails": "ap@org-a.example\ncfo@org-a.example, ap@org-a.example",
}


def test_an_owner_saves_the_details_and_sees_them(as_alice, org_a):
    page = as_alice.get("/billing/details/")
    assert page.status_code == 200
    assert b"alice@example.com" in page.content  # no billing emails yet: the owners are told
    response = as_alice.post("/billing/details/", FORM)
    assert (response.status_code, response["Location"]) == (302, "/billing/details/")
    details = BillingDetails.objects.get(organization=org_a)
    assert (details.legal_name, details.tax_id_value, details.emails) == (
        "Org A Inc.",
        "04-2103594",
        ["ap@org-a.example", "cfo@org-a.example"],
    )
    page = as_alice.get("/billing/details/")
    assert b"04-2103594" in page.content and b"ap@org-a.example, cfo@org-a.example" in page.content
    assert AuditEvent.objects.filter(action="invoicing.billing_details.set", organization=org_a).count() == 1


def test_a_billing_admin_may_change_them(as_bill, org_a):
    assert as_bill.post("/billing/details/", FORM).status_code == 302
    assert BillingDetails.objects.filter(organization=org_a).exists()


@pytest.mark.parametrize("who", ["as_bob", "as_vera"])
def test_developers_and_viewers_are_refused(who, request, org_a):
    client = request.getfixturevalue(who)
    assert client.get("/billing/details/").status_code == 403
    assert client.post("/billing/details/", FORM).status_code == 403
    assert not BillingDetails.objects.exists()


def test_someone_logged_out_is_sent_to_log_in(client):
    response = client.get("/billing/details/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_each_organization_edits_its_own(as_alice, as_charlie, org_a, org_b):
    as_charlie.post("/billing/details/", FORM | {"legal_name": "Org B Ltd"})
    as_alice.post("/billing/details/", FORM)
    assert dict(BillingDetails.objects.values_list("organization_id", "legal_name")) == {
        org_a.pk: "Org A Inc.",
        org_b.pk: "Org B Ltd",
    }


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"legal_name": ""}, "This field is required"),
        ({"country": "ZZ"}, "Select a valid choice"),
        ({"tax_id_type": "us_ein", "tax_id_value": "12-34"}, "not a valid US EIN"),
        ({"tax_id_type": "xx"}, "Select a valid choice"),
        ({"tax_id_value": ""}, "or neither"),
        ({"emails": "ap@org-a.example, not-an-address"}, "is not an email address"),
        ({"legal_name": "x" * 201}, "at most 200 characters"),
    ],
)
def test_bad_input_answers_the_form_with_its_error_and_writes_nothing(as_alice, changes, says):
    response = as_alice.post("/billing/details/", FORM | changes)
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not BillingDetails.objects.exists()
    assert not AuditEvent.objects.filter(action="invoicing.billing_details.set").exists()


def test_the_billing_menu_links_to_the_page(as_alice):
    assert b'href="/billing/details/"' in as_alice.get("/").content
