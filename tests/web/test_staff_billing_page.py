"""The staff console's billing page of an organization: staff only; every change through its service with a
reason in the audit log; bad input answers the page with the form's error and writes nothing."""

import pytest
from django.test import Client

from accounts.models import AuditEvent
from billing.invoicing.models import BillingProfile, Suspension
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from tests.accounts.factories import UserFactory

PROFILE = {
    "anchor_day": "15",
    "collection_method": "send_invoice",
    "days_until_due": "14",
    "progressive_threshold": "250.00",
    "reason": "Signed an enterprise contract",
}


@pytest.fixture
def dana(db):
    return UserFactory(username="dana@operator.example", is_staff=True)


@pytest.fixture
def as_dana(dana) -> Client:
    client = Client()
    client.force_login(dana)
    return client


def page(org) -> str:
    return f"/staff/organizations/{org.pk}/billing/"


def test_only_staff_see_it(as_alice, org_a, client):
    assert as_alice.get(page(org_a)).status_code == 302  # to the log-in page, as every staff page
    assert as_alice.post(page(org_a) + "suspend/", {"reason": "x"}).status_code == 302
    assert client.get(page(org_a)).status_code == 302
    assert not Suspension.objects.exists()


def test_the_page_shows_the_profile_overdraft_and_state(as_dana, org_a):
    response = as_dana.get(page(org_a))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Monthly from day 1" in text and "Charge the saved card" in text and "(default)" in text
    assert "No unpaid invoice." in text and "Active" in text
    assert as_dana.get("/staff/organizations/?q=Org A").status_code == 200
    assert as_dana.get("/staff/organizations/999999/billing/").status_code == 404


def test_staff_set_how_it_is_invoiced_with_a_reason(as_dana, org_a):
    response = as_dana.post(page(org_a) + "profile/", PROFILE)
    assert (response.status_code, response["Location"]) == (302, page(org_a))
    profile = BillingProfile.objects.get(organization=org_a)
    assert (profile.anchor_day, profile.collection_method, profile.days_until_due) == (15, "send_invoice", 14)
    assert profile.progressive_threshold_nano == 250 * 10**9
    event = AuditEvent.objects.get(action="invoicing.billing_profile.set", organization=org_a)
    assert (event.reason, event.actor_label) == ("Signed an enterprise contract", "dana@operator.example")
    assert "Monthly from day 15" in as_dana.get(page(org_a)).content.decode()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"anchor_day": "29"}, "less than or equal to 28"),
        ({"anchor_day": "x"}, "whole number"),
        ({"collection_method": "cash"}, "Select a valid choice"),
        ({"days_until_due": "0"}, "greater than or equal to 1"),
        ({"progressive_threshold": "-5"}, ""),
        ({"progressive_threshold": "0"}, "greater than zero"),
        ({"reason": ""}, "This field is required"),
    ],
)
def test_a_bad_profile_is_refused_and_nothing_is_written(as_dana, org_a, changes, says):
    response = as_dana.post(page(org_a) + "profile/", PROFILE | changes)
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not BillingProfile.objects.exists()
    assert not AuditEvent.objects.filter(action="invoicing.billing_profile.set").exists()


def test_staff_set_the_overdraft_with_a_reason(as_dana, org_a):
    response = as_dana.post(page(org_a) + "overdraft/", {"overdraft_limit": "100.00", "reason": "Trusted customer"})
    assert response.status_code == 302
    assert Wallet.objects.get(organization=org_a).overdraft_limit_nano == 100 * 10**9
    assert AuditEvent.objects.get(action="wallet.overdraft_set", organization=org_a).reason == "Trusted customer"
    refused = as_dana.post(page(org_a) + "overdraft/", {"overdraft_limit": "lots", "reason": "x"})
    assert refused.status_code == 400
    assert Wallet.objects.get(organization=org_a).overdraft_limit_nano == 100 * 10**9


def test_staff_suspend_and_restore_postpaid_use_with_reasons(as_dana, org_a):
    ledger.wallet_overdraft_set(organization_id=org_a.pk, overdraft_limit_nano=50 * 10**9, actor="test")
    response = as_dana.post(page(org_a) + "suspend/", {"reason": "Card fraud under review"})
    assert response.status_code == 302
    suspension = Suspension.objects.get(organization=org_a, lifted_at__isnull=True)
    assert (suspension.reason, suspension.invoice, suspension.overdraft_limit_before_nano) == (
        "Card fraud under review",
        None,
        50 * 10**9,
    )
    assert Wallet.objects.get(organization=org_a).overdraft_limit_nano == 0  # it owed nothing
    assert "Card fraud under review" in as_dana.get(page(org_a)).content.decode()
    # Suspending twice is a conflict, and writes nothing.
    again = as_dana.post(page(org_a) + "suspend/", {"reason": "again"})
    assert again.status_code == 409 and "already suspended" in again.content.decode()
    assert Suspension.objects.filter(organization=org_a).count() == 1
    assert as_dana.post(page(org_a) + "restore/", {"reason": ""}).status_code == 400
    assert as_dana.post(page(org_a) + "restore/", {"reason": "Cleared by the bank"}).status_code == 302
    suspension.refresh_from_db()
    assert suspension.lifted_at is not None
    assert Wallet.objects.get(organization=org_a).overdraft_limit_nano == 50 * 10**9
    reasons = dict(AuditEvent.objects.filter(action__startswith="invoicing.postpaid_").values_list("action", "reason"))
    assert reasons == {
        "invoicing.postpaid_suspend": "Card fraud under review",
        "invoicing.postpaid_restore": "Cleared by the bank",
    }
    assert as_dana.post(page(org_a) + "restore/", {"reason": "again"}).status_code == 409


def test_unknown_organizations_are_not_found(as_dana):
    assert as_dana.post("/staff/organizations/999999/billing/suspend/", {"reason": "x"}).status_code == 404
    assert as_dana.post("/staff/organizations/999999/billing/profile/", PROFILE).status_code == 404
