"""The saved card (Billing -> Payment methods): kept with brand, last4 and expiry, made the Stripe customer's invoice
default, and removed for good (detached at Stripe, no longer the invoices' card, auto top-up turned off and the
customer told). Stripe = localstripe."""

import pytest
from django.test import Client

from accounts.models import AuditEvent, Role
from billing.invoicing.services.stripe_push import saved_card
from billing.payments import services
from billing.payments.models import AutoTopUp, StripeCustomer
from billing.payments.stripe_client import stripe_client
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.billing.payments.helpers import CARD_OK, browser_confirm_card_setup, usd

pytestmark = pytest.mark.django_db(transaction=True)


def _save(localstripe, user, org, number: str = CARD_OK) -> AutoTopUp:
    secret = services.auto_topup_card_start(organization_id=org.pk, actor=user)
    setup_intent = browser_confirm_card_setup(localstripe.url, secret, number)
    return services.auto_topup_card_save(organization_id=org.pk, setup_intent_id=setup_intent["id"], actor=user)


def _customer(org):
    customer_id = StripeCustomer.objects.get(organization=org).stripe_customer_id
    return stripe_client().v1.customers.retrieve(customer_id)


def test_a_saved_card_is_shown_and_is_the_invoices_card(localstripe, org_a, alice, alice_client):
    card = _save(localstripe, alice, org_a)
    assert (card.card_brand, card.card_last4, card.card_exp_month, card.card_exp_year) == ("visa", "4242", 12, 2034)
    invoice_settings = _customer(org_a).invoice_settings
    assert invoice_settings is not None and invoice_settings.default_payment_method == card.stripe_payment_method_id
    assert saved_card(organization_id=org_a.pk) == card.stripe_payment_method_id

    page = alice_client.get("/billing/payment-methods/").content.decode()
    assert "Visa" in page and "4242" in page and "12/2034" in page


def test_removing_the_card_detaches_it_and_turns_auto_top_up_off_with_a_message(
    localstripe, org_a, alice, alice_client
):
    card = _save(localstripe, alice, org_a)
    services.auto_topup_update(
        organization_id=org_a.pk,
        enabled=True,
        threshold_nano=usd("5"),
        amount_nano=usd("20"),
        daily_cap_nano=usd("40"),
        actor=alice,
    )
    response = alice_client.post("/billing/payment-methods/", {"action": "remove_card"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Auto top-up was turned off" in page and "No card saved." in page

    config = AutoTopUp.objects.get(organization=org_a)
    assert (config.enabled, config.stripe_payment_method_id, config.card_last4, config.card_brand) == (
        False,
        "",
        "",
        "",
    )
    assert stripe_client().v1.payment_methods.retrieve(card.stripe_payment_method_id).customer is None
    invoice_settings = _customer(org_a).invoice_settings
    assert invoice_settings is not None and invoice_settings.default_payment_method is None
    assert saved_card(organization_id=org_a.pk) is None
    assert AuditEvent.objects.filter(action="payment_method.remove", organization_id=org_a.pk).exists()
    # A manual top-up can no longer choose it.
    started = alice_client.post(
        "/billing/top-up/start/", {"amount": "20", "card": "saved"}, content_type="application/json"
    )
    assert started.status_code == 400 and started.json()["error"]["code"] == "no_saved_card"


def test_removing_when_no_card_is_saved_changes_nothing_and_says_so(localstripe, org_a, alice_client):
    response = alice_client.post("/billing/payment-methods/", {"action": "remove_card"}, follow=True)
    assert response.status_code == 200
    assert "No card saved." in response.content.decode()


@pytest.mark.parametrize("data", [{}, {"action": "delete_everything"}])
def test_an_unknown_action_is_a_400(org_a, alice_client, data):
    response = alice_client.post("/billing/payment-methods/", data)
    assert response.status_code == 400
    assert "action=remove_card" in response.content.decode()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_developers_and_viewers_cannot_remove_the_card(localstripe, org_a, alice, role):
    card = _save(localstripe, alice, org_a)
    user = UserFactory()
    MembershipFactory(user=user, organization=org_a, role=role)
    client = Client()
    client.force_login(user)
    assert client.post("/billing/payment-methods/", {"action": "remove_card"}).status_code == 403
    assert AutoTopUp.objects.get(organization=org_a).stripe_payment_method_id == card.stripe_payment_method_id
