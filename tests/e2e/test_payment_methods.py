"""Billing -> Payment methods in Chromium: add a card, see it (brand, last4, expiry), remove it; with auto top-up
on, removing the card turns it off and says so."""

import pytest
from playwright.sync_api import expect

from billing.payments import services
from billing.payments.models import AutoTopUp, StripeCustomer
from billing.payments.stripe_client import stripe_client

# The payments fixtures (webhooks from localstripe to the live server, eager Celery, the local cache reset), imported
# so pytest finds them here; the tests' parameters name them, which ruff would report as redefinitions.
# ruff: noqa: F811
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import CARD_OK, browser_fill_card, browser_login, customer_create, usd

pytestmark = pytest.mark.e2e

EMAIL = "kim@example.com"


def test_add_see_and_remove_the_saved_card(live_url, page, stripe_webhooks):
    user, organization = customer_create(EMAIL)
    browser_login(page, live_url, EMAIL, next_path="/")
    page.locator("summary", has_text="Billing").click()
    page.get_by_role("link", name="Payment methods").click()
    expect(page.get_by_test_id("saved-card")).to_have_text("No card saved.")

    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_test_id("saved-card-last4")).to_have_text("4242")
    expect(page.get_by_test_id("saved-card-brand")).to_have_text("Visa")
    expect(page.get_by_test_id("saved-card-expiry")).to_have_text("12/2034")
    card = AutoTopUp.objects.get(organization=organization)
    customer = stripe_client().v1.customers.retrieve(
        StripeCustomer.objects.get(organization=organization).stripe_customer_id
    )
    assert customer.invoice_settings is not None
    assert customer.invoice_settings.default_payment_method == card.stripe_payment_method_id

    # Auto top-up charges it: removing the card turns auto top-up off, with a message saying so.
    services.auto_topup_update(
        organization_id=organization.pk,
        enabled=True,
        threshold_nano=usd("1"),
        amount_nano=usd("20"),
        daily_cap_nano=usd("40"),
        actor=user,
    )
    page.reload()
    page.get_by_role("button", name="Remove card").click()
    expect(page.get_by_text("Auto top-up was turned off")).to_be_visible()
    expect(page.get_by_test_id("saved-card")).to_have_text("No card saved.")
    card.refresh_from_db()
    assert (card.stripe_payment_method_id, card.enabled) == ("", False)

    page.goto(f"{live_url}/billing/auto-top-up/")
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    page.goto(f"{live_url}/billing/top-up/")
    expect(page.locator("#card-choice")).to_have_count(0)  # no saved card to choose


def test_a_bad_expiry_is_explained_before_anything_is_sent(live_url, page, stripe_webhooks):
    customer_create(EMAIL)
    browser_login(page, live_url, EMAIL, next_path="/billing/payment-methods/")
    browser_fill_card(page, CARD_OK)
    page.locator("#card-element input[placeholder=exp_month]").fill("13")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_test_id("card-error")).to_contain_text("expiry month is not valid")
    assert not StripeCustomer.objects.exists()  # nothing was sent to Stripe
