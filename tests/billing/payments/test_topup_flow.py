"""Manual top-ups end to end over HTTP: the page's JSON endpoints in-process, Stripe = localstripe, and Stripe's
webhook delivered by localstripe to the live server. Credit appears only once the signed webhook arrived."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from billing.ledger.models import Grant
from billing.payments.models import AutoTopUp, StripeCustomer, StripeEvent, TopUp
from billing.payments.stripe_client import stripe_client
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_payment,
    usd,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, url: str, body: dict) -> object:
    return client.post(url, body, content_type="application/json")


def start_and_confirm_card(
    client, localstripe, *, amount: str, card: str, authenticate: bool = False
) -> tuple[dict, dict]:
    """The page's first two steps for a new card: start the top-up, then stripe.confirmCardPayment with the card."""
    response = post(client, "/billing/top-up/start/", {"amount": amount})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["payment_intent_client_secret"].startswith("pi_")
    confirmed = browser_confirm_card_payment(
        localstripe.url, body["payment_intent_client_secret"], card, authenticate=authenticate
    )
    return body["top_up"], confirmed


def paid(top_up_id: int) -> bool:
    return TopUp.objects.get(pk=top_up_id).status == TopUp.Status.SUCCEEDED


def test_a_top_up_is_credited_once_stripes_webhook_arrives(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, confirmed = start_and_confirm_card(alice_client, localstripe, amount="20.00", card=CARD_OK)
    assert top_up["status"] == "pending" and top_up["amount"] == "20.00"
    assert confirmed["status"] == "succeeded"

    response = post(alice_client, top_up["urls"]["pay"], {})
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
    top_up, _ = start_and_confirm_card(alice_client, localstripe, amount="7.50", card=CARD_OK)
    first = post(alice_client, top_up["urls"]["pay"], {})
    second = post(alice_client, top_up["urls"]["pay"], {})
    assert first.status_code == second.status_code == 200
    wait_for(lambda: paid(top_up["id"]), what="the webhook")
    assert TopUp.objects.filter(organization=org_a).count() == 1
    assert available(org_a.pk) == usd("7.50")


def test_concurrent_pay_calls_after_a_new_card_keep_it_once_and_credit_once(
    alice_client, org_a, localstripe, stripe_webhooks
):
    top_up, _ = start_and_confirm_card(alice_client, localstripe, amount="9.00", card=CARD_OK)

    def pay_once(_: int) -> int:
        try:
            return post(alice_client, top_up["urls"]["pay"], {}).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(pay_once, range(6)))
    assert statuses == [200] * 6
    wait_for(lambda: paid(top_up["id"]), what="the webhook")
    assert available(org_a.pk) == usd("9")
    assert Grant.objects.count() == 1
    row = TopUp.objects.get(pk=top_up["id"])
    assert AutoTopUp.objects.get(organization=org_a).stripe_payment_method_id == row.stripe_payment_method_id
    assert row.card_last4 == "4242"


def test_a_card_declined_at_charge_shows_why_and_grants_nothing(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, confirmed = start_and_confirm_card(alice_client, localstripe, amount="20.00", card=CARD_DECLINED_AT_CHARGE)
    assert confirmed["error"]["code"] == "card_declined"  # what Stripe.js hands the page
    response = post(alice_client, top_up["urls"]["pay"], {})
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
    # Paying the failed top-up again answers with the same decline, and charges nothing; no card was kept.
    again = post(alice_client, top_up["urls"]["pay"], {})
    assert again.status_code == 402
    assert not AutoTopUp.objects.filter(organization=org_a).exclude(stripe_payment_method_id="").exists()


def test_a_new_card_that_needs_authentication_is_authenticated_once_and_kept(
    alice_client, org_a, localstripe, stripe_webhooks
):
    top_up, confirmed = start_and_confirm_card(
        alice_client, localstripe, amount="20.00", card=CARD_NEEDS_AUTHENTICATION
    )
    # Confirming the PaymentIntent with the card's details asks for 3-D Secure: the page's one dialog.
    assert confirmed["status"] == "requires_action"
    assert available(org_a.pk) == 0
    secret = confirmed["client_secret"]
    assert browser_confirm_card_payment(localstripe.url, secret)["status"] == "succeeded"

    response = post(alice_client, top_up["urls"]["pay"], {})
    assert response.status_code == 200, response.content
    assert (response.json()["top_up"]["status"], response.json()["payment_intent_client_secret"]) == (
        "processing",
        None,
    )
    wait_for(lambda: paid(top_up["id"]), what="the webhook after authentication")
    assert available(org_a.pk) == usd("20")
    row = TopUp.objects.get(pk=top_up["id"])
    assert StripeEvent.objects.filter(type="payment_intent.succeeded", payload__contains=row.stripe_payment_intent_id)
    assert Grant.objects.count() == 1
    assert AutoTopUp.objects.get(organization=org_a).stripe_payment_method_id == row.stripe_payment_method_id


def test_a_new_card_is_kept_as_the_saved_card_and_the_invoices_card(alice_client, org_a, localstripe, stripe_webhooks):
    top_up, _ = start_and_confirm_card(alice_client, localstripe, amount="20.00", card=CARD_OK)
    post(alice_client, top_up["urls"]["pay"], {})
    row = TopUp.objects.get(pk=top_up["id"])
    saved = AutoTopUp.objects.get(organization=org_a)
    assert (saved.stripe_payment_method_id, saved.card_last4, saved.card_brand) == (
        row.stripe_payment_method_id,
        "4242",
        "visa",
    )
    assert (saved.card_exp_month, saved.card_exp_year) == (12, 2034)
    assert not saved.enabled  # kept for later; auto top-up stays as it was
    customer_id = StripeCustomer.objects.get(organization=org_a).stripe_customer_id
    customer = stripe_client().v1.customers.retrieve(customer_id)
    assert customer.invoice_settings is not None
    assert customer.invoice_settings.default_payment_method == row.stripe_payment_method_id
    # Stripe keeps the card on the customer (setup_future_usage) once the payment succeeded.
    wait_for(lambda: paid(top_up["id"]), what="the webhook")
    assert stripe_client().v1.payment_methods.retrieve(row.stripe_payment_method_id).customer == customer_id

    # The next top-up can use it.
    page = alice_client.get("/billing/top-up/").content.decode()
    assert "Saved card ending 4242" in page
    again = post(alice_client, "/billing/top-up/start/", {"amount": "5", "card": "saved"}).json()
    assert again["payment_intent_client_secret"] is None
    assert post(alice_client, again["top_up"]["urls"]["pay"], {}).status_code == 200
    wait_for(lambda: paid(again["top_up"]["id"]), what="the second top-up's webhook")
    assert available(org_a.pk) == usd("25")


def test_failed_authentication_is_recorded_from_stripe_not_from_the_browser(
    alice_client, org_a, localstripe, stripe_webhooks
):
    top_up, confirmed = start_and_confirm_card(
        alice_client, localstripe, amount="20.00", card=CARD_NEEDS_AUTHENTICATION
    )
    browser_confirm_card_payment(localstripe.url, confirmed["client_secret"], success=False)

    synced = post(alice_client, top_up["urls"]["sync"], {}).json()["top_up"]
    assert synced["status"] == "failed"
    assert synced["failure_message"] == "The provided PaymentMethod has failed authentication."
    assert available(org_a.pk) == 0
    assert not AutoTopUp.objects.filter(organization=org_a).exists()


def test_a_card_step_left_unfinished_ends_as_not_completed(alice_client, org_a, localstripe):
    response = post(alice_client, "/billing/top-up/start/", {"amount": "10"})
    synced = post(alice_client, response.json()["top_up"]["urls"]["sync"], {}).json()["top_up"]
    assert (synced["status"], synced["failure_code"], synced["status_display"]) == (
        "failed",
        "card_not_confirmed",
        "Not completed",
    )


def test_paying_before_the_card_is_confirmed_is_refused_and_can_be_retried(alice_client, org_a, localstripe):
    response = post(alice_client, "/billing/top-up/start/", {"amount": "10"})
    body = response.json()
    early = post(alice_client, body["top_up"]["urls"]["pay"], {})
    assert early.status_code == 400
    assert early.json()["error"]["code"] == "card_not_confirmed"
    assert TopUp.objects.get(pk=body["top_up"]["id"]).status == "pending"

    browser_confirm_card_payment(localstripe.url, body["payment_intent_client_secret"], CARD_OK)
    later = post(alice_client, body["top_up"]["urls"]["pay"], {})
    assert later.status_code == 200
