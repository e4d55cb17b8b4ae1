"""The top-up page in Chromium, around the edges of a payment: the card's expiry year typed with 4 digits, attempts
left unfinished or failed at 3-D Secure ending in a final state, the list of attempts redrawn without a reload,
3-D Secure asked once, and the saved card reused."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.payments import services
from billing.payments.models import AutoTopUp, TopUp
from billing.payments.stripe_client import stripe_client

# The payments fixtures (webhooks from localstripe to the live server, eager Celery, the local cache reset), imported
# so pytest finds them here; the tests' parameters name them, which ruff would report as redefinitions.
# ruff: noqa: F811
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import (
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_setup,
    browser_fill_card,
    browser_login,
    customer_create,
    usd,
)

pytestmark = pytest.mark.e2e

WEBHOOK_TIMEOUT_MS = 20_000
EMAIL = "gina@example.com"


@pytest.fixture
def customer(live_url, stripe_webhooks):
    return customer_create(EMAIL)


def _open(page, live_url):
    browser_login(page, live_url, EMAIL, next_path="/billing/top-up/")


def _rows(page):
    return page.get_by_test_id("recent-top-up")


def test_a_four_digit_expiry_year_is_accepted(live_url, page, customer):
    _, organization = customer
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_OK)
    page.locator("#card-element input[placeholder=exp_year]").fill("2034")
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00 was added", timeout=WEBHOOK_TIMEOUT_MS)
    assert available(organization.pk) == usd("20")
    top_up = TopUp.objects.get(organization=organization)
    payment_method = stripe_client().v1.payment_methods.retrieve(top_up.stripe_payment_method_id)
    assert payment_method.card is not None and payment_method.card.exp_year == 2034


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exp_year", "3", "expiry year is not valid: type it as 2 or 4 digits"),
        ("exp_year", "20345", "expiry year is not valid"),
        ("exp_month", "13", "expiry month is not valid: type a number from 1 to 12"),
    ],
)
def test_a_bad_expiry_is_explained_on_its_field_and_nothing_starts(live_url, page, customer, field, value, message):
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_OK)
    page.locator(f"#card-element input[placeholder={field}]").fill(value)
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("top-up-error")).to_contain_text(message)
    expect(page.locator(f"#card-element input[placeholder={field}]")).to_be_focused()
    assert not TopUp.objects.exists()


def test_recent_top_ups_are_redrawn_after_a_payment_without_a_reload(live_url, page, customer):
    _open(page, live_url)
    expect(_rows(page)).to_have_count(0)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00", timeout=WEBHOOK_TIMEOUT_MS)
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).first).to_contain_text("Paid")
    expect(_rows(page).first).to_contain_text("$20.00")
    expect(_rows(page).first).to_contain_text("4242")

    # A second one joins the list, newest first, still without a reload.
    page.get_by_label("Amount (USD)").fill("7.50")
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $7.50", timeout=WEBHOOK_TIMEOUT_MS)
    expect(_rows(page)).to_have_count(2)
    expect(_rows(page).first).to_contain_text("$7.50")


def test_a_failed_authentication_ends_the_attempt_as_authentication_failed(live_url, page, customer):
    _, organization = customer
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_NEEDS_AUTHENTICATION)
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("button", name="Fail authentication").click()  # the one 3-D Secure dialog

    expect(page.get_by_test_id("top-up-error")).to_contain_text("authentication")
    expect(_rows(page).first).to_contain_text("Authentication failed")
    top_up = TopUp.objects.get(organization=organization)
    assert (top_up.status, top_up.failure_code) == ("failed", "payment_intent_authentication_failure")
    assert available(organization.pk) == 0
    assert not AutoTopUp.objects.filter(organization=organization).exclude(stripe_payment_method_id="").exists()


def test_card_details_stripe_refuses_do_not_leave_the_attempt_waiting(live_url, page, customer):
    _, organization = customer
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, "4242")  # too short: Stripe refuses the card's details
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-error")).to_be_visible()
    expect(_rows(page).first).to_contain_text("Not completed")
    assert TopUp.objects.get(organization=organization).status == "failed"


def test_attempts_left_unfinished_read_abandoned_after_an_hour(live_url, page, customer):
    user, organization = customer
    # One left at 3-D Secure (a PaymentIntent waits at Stripe), one left before the card was confirmed.
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_NEEDS_AUTHENTICATION)
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_role("button", name="Complete authentication")).to_be_visible()  # left open
    at_authentication = TopUp.objects.get(organization=organization)
    never_confirmed = services.topup_start(organization_id=organization.pk, amount="30.00", actor=user).top_up

    page.goto(f"{live_url}/billing/top-up/")
    # The browser's 3-D Secure step is Stripe's business until it ends: both wait for the customer's card.
    expect(_rows(page).filter(has_text="Waiting for card")).to_have_count(2)

    an_hour_ago = timezone.now() - timedelta(hours=1, seconds=1)
    TopUp.objects.update(created_at=an_hour_ago, updated_at=an_hour_ago)
    page.reload()
    expect(_rows(page).filter(has_text="Abandoned")).to_have_count(2)
    expect(_rows(page).filter(has_text="Waiting")).to_have_count(0)
    for top_up in (at_authentication, never_confirmed):
        top_up.refresh_from_db()
        assert (top_up.status, top_up.failure_code) == ("failed", "abandoned")
    # The PaymentIntent left at 3-D Secure is canceled at Stripe: it can no longer take the money.
    assert stripe_client().v1.payment_intents.retrieve(at_authentication.stripe_payment_intent_id).status == "canceled"
    assert available(organization.pk) == 0


def _save_card(localstripe, user, organization, number):
    secret = services.auto_topup_card_start(organization_id=organization.pk, actor=user)
    setup_intent = browser_confirm_card_setup(localstripe.url, secret, number)
    return services.auto_topup_card_save(
        organization_id=organization.pk, setup_intent_id=setup_intent["id"], actor=user
    )


def test_the_saved_card_pays_a_manual_top_up(live_url, page, customer, localstripe):
    user, organization = customer
    saved = _save_card(localstripe, user, organization, CARD_OK)
    _open(page, live_url)
    expect(page.get_by_label("Saved card ending 4242")).to_be_checked()
    expect(page.locator("#card-element")).to_be_hidden()
    page.get_by_label("Amount (USD)").fill("25")
    page.get_by_role("button", name="Pay").click()

    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $25.00", timeout=WEBHOOK_TIMEOUT_MS)
    top_up = TopUp.objects.get(organization=organization)
    assert (top_up.kind, top_up.card_last4, top_up.stripe_setup_intent_id) == ("manual", "4242", "")
    assert top_up.stripe_payment_method_id == saved.stripe_payment_method_id
    assert available(organization.pk) == usd("25")

    # A new card can still be chosen.
    page.get_by_label("A new card").check()
    expect(page.locator("#card-element")).to_be_visible()


def test_three_d_secure_is_asked_once_for_a_top_up_with_the_saved_card(live_url, page, customer, localstripe):
    user, organization = customer
    _save_card(localstripe, user, organization, CARD_NEEDS_AUTHENTICATION)  # authenticated when it was saved
    _open(page, live_url)
    page.get_by_label("Amount (USD)").fill("20")
    dialogs = page.get_by_role("button", name="Complete authentication")
    page.get_by_role("button", name="Pay").click()
    dialogs.click()

    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00", timeout=WEBHOOK_TIMEOUT_MS)
    expect(dialogs).to_have_count(0)
    assert available(organization.pk) == usd("20")
