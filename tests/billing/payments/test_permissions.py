"""Who sees the billing pages: owners and billing admins; developers and viewers get 403; another organization's
top-ups and receipts are 404, exactly like ids that do not exist."""

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from billing.payments.models import TopUp
from tests.accounts.factories import MembershipFactory, UserFactory

PAGES = ["/billing/top-up/", "/billing/auto-top-up/", "/billing/payment-methods/", "/billing/receipts/"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paid_top_up(org_a) -> TopUp:
    from billing.ledger import services as ledger

    grant = ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=20 * 10**9, idempotency_key="pi_a", actor="test"
    ).grant
    return TopUp.objects.create(
        organization=org_a,
        kind="manual",
        status="succeeded",
        amount_nano=20 * 10**9,
        stripe_payment_intent_id="pi_a",
        grant_id=grant.pk,
        succeeded_at=timezone.now(),
        card_last4="4242",
    )


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [Role.OWNER, Role.BILLING_ADMIN])
def test_owners_and_billing_admins_see_the_billing_pages(org_a, path, role):
    user = UserFactory()
    MembershipFactory(user=user, organization=org_a, role=role)
    assert client_for(user).get(path).status_code == 200


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_developers_and_viewers_get_403(org_a, path, role):
    user = UserFactory()
    MembershipFactory(user=user, organization=org_a, role=role)
    assert client_for(user).get(path).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_log_in(db, path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/billing/top-up/start/"),
        ("post", "/billing/auto-top-up/card/"),
        ("post", "/billing/auto-top-up/card/confirm/"),
    ],
)
def test_json_endpoints_refuse_developers_and_anonymous_visitors(bob, method, path):
    # A developer is known and refused (403); an anonymous visitor is not authenticated at all (401).
    for client, status in ((client_for(bob), 403), (Client(), 401)):
        response = getattr(client, method)(path, {"amount": "20"}, content_type="application/json")
        assert response.status_code == status
        assert response.json()["error"]["message"]


def test_a_developer_cannot_read_a_top_up(bob, paid_top_up):
    response = client_for(bob).get(f"/billing/top-up/{paid_top_up.pk}/")
    assert response.status_code == 403


def test_another_organizations_receipt_and_top_up_are_404(charlie, alice, paid_top_up):
    outsider = client_for(charlie)
    assert outsider.get(f"/billing/receipts/{paid_top_up.pk}/").status_code == 404
    assert outsider.get(f"/billing/top-up/{paid_top_up.pk}/").status_code == 404
    for action in ("pay", "sync"):
        response = outsider.post(
            f"/billing/top-up/{paid_top_up.pk}/{action}/",
            {},
            content_type="application/json",
        )
        assert response.status_code == 404
        assert response.json()["error"] == {
            "message": "top-up not found",
            "type": "not_found_error",
            "param": "top_up_id",
            "code": "not_found",
        }
    # Exactly like an id that does not exist.
    assert (
        outsider.get("/billing/top-up/999999999/").json() == outsider.get(f"/billing/top-up/{paid_top_up.pk}/").json()
    )
    assert paid_top_up.receipt_number not in outsider.get("/billing/receipts/").content.decode()
    assert paid_top_up.receipt_number not in outsider.get("/billing/top-up/").content.decode()

    owner = client_for(alice)
    assert owner.get(f"/billing/receipts/{paid_top_up.pk}/").status_code == 200
    assert paid_top_up.receipt_number in owner.get("/billing/receipts/").content.decode()


def test_switching_to_another_organization_shows_its_receipts_only(alice, org_b, paid_top_up):
    MembershipFactory(user=alice, organization=org_b, role=Role.OWNER)
    client = client_for(alice)
    assert client.post("/organization/switch/", {"organization_id": org_b.pk}).status_code == 302
    assert client.get(f"/billing/receipts/{paid_top_up.pk}/").status_code == 404
    assert paid_top_up.receipt_number not in client.get("/billing/receipts/").content.decode()
