"""Top up in Chromium against the live server and localstripe: log in, pay with a card, and see the credit only
after Stripe's webhook; a declined card shows why; a new card that needs 3-D Secure is authenticated once, and kept."""

import pytest
from playwright.sync_api import expect

from billing.ledger.models import Grant
from billing.payments.models import AutoTopUp, StripeEvent, TopUp

# The payments fixtures (webhooks from localstripe to the live server, eager Celery, the local cache reset), imported
# so pytest finds them here; the tests' parameters name them, which ruff would report as redefinitions.
# ruff: noqa: F811
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_fill_card,
    browser_login,
    customer_create,
    usd,
    wait_for,
)

pytestmark = pytest.mark.e2e

# localstripe delivers webhooks about a second after the charge; the page polls for them.
WEBHOOK_TIMEOUT_MS = 20_000


@pytest.fixture
def customer(live_url, stripe_webhooks):
    return customer_create("erin@example.com")


def test_top_up_20_dollars_with_a_card(live_url, page, customer):
    _, organization = customer
    browser_login(page, live_url, "erin@example.com", next_path="/billing/top-up/")
    balance = page.get_by_test_id("balance-available")
    expect(balance).to_have_text("$0.00")

    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00 was added", timeout=WEBHOOK_TIMEOUT_MS)
    expect(balance).to_have_text("$20.00")
    top_up = TopUp.objects.get(organization=organization)
    assert (top_up.status, top_up.card_last4) == ("succeeded", "4242")
    assert StripeEvent.objects.get(type="payment_intent.succeeded").status == "processed"

    page.reload()
    expect(page.get_by_test_id("balance-available")).to_have_text("$20.00")
    page.goto(f"{live_url}/billing/receipts/")
    expect(page.get_by_test_id("receipt-row")).to_have_count(1)
    expect(page.get_by_test_id("receipt-row")).to_contain_text(top_up.receipt_number)
    expect(page.get_by_test_id("receipt-row")).to_contain_text("$20.00")


def test_a_declined_card_shows_why_and_grants_nothing(live_url, page, customer):
    _, organization = customer
    browser_login(page, live_url, "erin@example.com", next_path="/billing/top-up/")
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_DECLINED_AT_CHARGE)
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-error")).to_have_text("Your card was declined.")
    expect(page.get_by_test_id("balance-available")).to_have_text("$0.00")
    # Stripe's payment_failed webhook arrives and changes nothing (the top-up already failed).
    event = wait_for(
        lambda: StripeEvent.objects.filter(type="payment_intent.payment_failed").exclude(status="received").first(),
        what="the payment_failed webhook",
    )
    assert event.status == "ignored" and "already settled" in event.error
    assert TopUp.objects.get(organization=organization).status == "failed"
    assert not Grant.objects.exists()
    assert available(organization.pk) == 0
    page.reload()
    expect(page.get_by_test_id("recent-top-ups")).to_contain_text("Your card was declined.")


def test_a_new_card_that_needs_3d_secure_authenticates_once_is_credited_once_and_saved(live_url, page, customer):
    _, organization = customer
    browser_login(page, live_url, "erin@example.com", next_path="/billing/top-up/")
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_NEEDS_AUTHENTICATION)
    authenticate = page.get_by_role("button", name="Complete authentication")

    page.get_by_role("button", name="Pay").click()
    authenticate.click()  # the one 3-D Secure dialog
    # A second dialog would hold the page at "authenticate" and never reach "Paid".
    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00", timeout=WEBHOOK_TIMEOUT_MS)
    expect(authenticate).to_have_count(0)
    expect(page.get_by_test_id("balance-available")).to_have_text("$20.00")
    assert available(organization.pk) == usd("20")

    top_up = TopUp.objects.get(organization=organization)
    assert (top_up.status, top_up.card_last4) == ("succeeded", "3220")
    assert Grant.objects.count() == 1
    # Stripe authenticated the payment once: one PaymentIntent, confirmed once, and no SetupIntent at all.
    assert top_up.stripe_setup_intent_id == ""
    assert StripeEvent.objects.filter(type="payment_intent.succeeded").count() == 1

    # The card is saved: the next top-up offers it, and it is the card on the Payment methods page.
    page.reload()
    expect(page.get_by_label("Saved card ending 3220")).to_be_checked()
    saved = AutoTopUp.objects.get(organization=organization)
    assert saved.stripe_payment_method_id == top_up.stripe_payment_method_id
    page.goto(f"{live_url}/billing/payment-methods/")
    expect(page.get_by_test_id("saved-card-last4")).to_have_text("3220")


def test_bad_amounts_are_explained_on_the_page(live_url, page, customer):
    browser_login(page, live_url, "erin@example.com", next_path="/billing/top-up/")
    page.get_by_label("Amount (USD)").fill("2.5")
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("top-up-error")).to_have_text("amount must be at least 5.00 USD")
    page.get_by_label("Amount (USD)").fill("ten")
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("top-up-error")).to_contain_text("is not a decimal amount")
    assert not TopUp.objects.exists()
