"""Manual top-ups end to end over HTTP: the page's JSON endpoints in-process, Stripe = localstripe, and Stripe's
webhook delivered by localstripe to the live server. Credit appears only once the signed webhook arrived."""

import pytest

from billing.ledger.models import Grant
from billing.payments.models import StripeEvent, TopUp
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_payment,
    browser_confirm_card_setup,
    usd,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, url: str, body: dict) -> object:
    return client.post(url, body, content_type="application/json")


def start_and_save_card(client, localstripe, *, amount: str, card: str) -> tuple[dict, dict]:
    response = post(client, "/billing/top-up/start/", {"amount": amount})
    assert response.status_code == 201, response.content
    body = response.json()
    setup_intent = browser_confirm_card_setup(localstripe.url, body["setup_intent_client_secret"], card)
    assert setup_intent["status"] == "succeeded"
    return body["top_up"], setup_intent


def paid(top_up_id: int) -> bool:
    return TopUp.objects.get(pk=top_up_id).status == TopUp.Status.SUCCEEDED


def test_a_top_up_is_credited_once_stripes_webhook_arrives(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, setup_intent = start_and_save_card(alice_client, localstripe, amount="20.00", card=CARD_OK)
    assert top_up["status"] == "pending" and top_up["amount"] == "20.00"

    response = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    assert response.status_code == 200, response.content
    assert response.json()["top_up"]["status"] == "processing"
    assert response.json()["payment_intent_client_secret"] is None
    # Stripe accepted the charge, but nothing is credited on that word alone.
    assert available(org_a.pk) == 0

    wait_for(lambda: paid(top_up["id"]), what="the payment_intent.succeeded webhook")
    row = TopUp.objects.get(pk=top_up["id"])
    assert available(org_a.pk) == usd("20")
    assert row.card_last4 == "4242"
    grant = Grant.objects.get(pk=row.grant_id)
    assert (grant.kind, grant.amount_nano, grant.source_ref) == ("paid", usd("20"), row.stripe_payment_intent_id)
    event = StripeEvent.objects.get(type="payment_intent.succeeded", payload__contains=row.stripe_payment_intent_id)
    assert (event.status, event.error, event.attempts) == ("processed", "", 1)

    status = alice_client.get(top_up["urls"]["status"]).json()
    assert status["top_up"]["status"] == "succeeded"
    assert status["balance"]["available_display"] == "$20.00"
    receipts = alice_client.get("/billing/receipts/")
    assert row.receipt_number in receipts.content.decode()


def test_paying_twice_charges_once(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, setup_intent = start_and_save_card(alice_client, localstripe, amount="7.50", card=CARD_OK)
    first = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    second = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    assert first.status_code == second.status_code == 200
    wait_for(lambda: paid(top_up["id"]), what="the webhook")
    assert TopUp.objects.filter(organization=org_a).count() == 1
    assert available(org_a.pk) == usd("7.50")


def test_a_card_declined_at_charge_shows_why_and_grants_nothing(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, setup_intent = start_and_save_card(alice_client, localstripe, amount="20.00", card=CARD_DECLINED_AT_CHARGE)
    response = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["message"] == "Your card was declined."
    assert (error["type"], error["code"]) == ("card_error", "card_declined")

    row = TopUp.objects.get(pk=top_up["id"])
    # Stripe's payment_failed event follows; it changes nothing more.
    wait_for(
        lambda: StripeEvent.objects.filter(
            type="payment_intent.payment_failed", payload__contains=row.stripe_payment_intent_id
        ).exclude(status="received"),
        what="the payment_failed webhook",
    )
    row.refresh_from_db()
    assert (row.status, row.failure_message, row.grant_id) == ("failed", "Your card was declined.", None)
    assert available(org_a.pk) == 0
    assert not Grant.objects.exists()
    # Paying the failed top-up again answers with the same decline, and charges nothing.
    again = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    assert again.status_code == 402


def test_a_card_that_needs_authentication_goes_through_requires_action(
    alice_client, org_a, localstripe, stripe_webhooks
):
    top_up, setup_intent = start_and_save_card(
        alice_client, localstripe, amount="20.00", card=CARD_NEEDS_AUTHENTICATION
    )
    response = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["top_up"]["status"] == "requires_action"
    secret = body["payment_intent_client_secret"]
    assert secret and secret.startswith("pi_")
    assert available(org_a.pk) == 0

    # The page's stripe.confirmCardPayment: the customer completes 3-D Secure.
    assert browser_confirm_card_payment(localstripe.url, secret)["status"] == "succeeded"
    wait_for(lambda: paid(top_up["id"]), what="the webhook after authentication")
    assert available(org_a.pk) == usd("20")


def test_failed_authentication_is_recorded_from_stripe_not_from_the_browser(
    alice_client, org_a, localstripe, stripe_webhooks
):
    top_up, setup_intent = start_and_save_card(
        alice_client, localstripe, amount="20.00", card=CARD_NEEDS_AUTHENTICATION
    )
    body = post(alice_client, top_up["urls"]["pay"], {"setup_intent_id": setup_intent["id"]}).json()
    browser_confirm_card_payment(localstripe.url, body["payment_intent_client_secret"], success=False)

    synced = post(alice_client, top_up["urls"]["sync"], {}).json()["top_up"]
    assert synced["status"] == "failed"
    assert synced["failure_message"] == "The provided PaymentMethod has failed authentication."
    assert available(org_a.pk) == 0


def test_paying_before_the_card_is_confirmed_is_refused_and_can_be_retried(alice_client, org_a, localstripe):
    response = post(alice_client, "/billing/top-up/start/", {"amount": "10"})
    body = response.json()
    setup_intent_id = body["setup_intent_client_secret"].split("_secret_")[0]
    early = post(alice_client, body["top_up"]["urls"]["pay"], {"setup_intent_id": setup_intent_id})
    assert early.status_code == 400
    assert early.json()["error"]["code"] == "card_not_confirmed"
    assert TopUp.objects.get(pk=body["top_up"]["id"]).status == "pending"

    browser_confirm_card_setup(localstripe.url, body["setup_intent_client_secret"], CARD_OK)
    later = post(alice_client, body["top_up"]["urls"]["pay"], {"setup_intent_id": setup_intent_id})
    assert later.status_code == 200
