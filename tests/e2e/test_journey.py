"""A new customer's whole first visit, in Chromium against the live server and localstripe: sign up, verify the
email, log in, top up $20 with a card, and see the $20 on the dashboard once Stripe's webhook has arrived."""

import pytest
from django.core import mail
from playwright.sync_api import expect

from billing.payments.models import TopUp

# ruff: noqa: F811  (pytest fixtures imported by name)
from tests.billing.payments.fixtures import _payments_hygiene, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import CARD_OK, browser_fill_card
from tests.e2e.test_signup import PASSWORD, link_in, log_in, wait_for_mail

pytestmark = pytest.mark.e2e


def test_sign_up_verify_log_in_top_up_and_see_it_on_the_dashboard(live_url, page, stripe_webhooks):
    page.goto(f"{live_url}/accounts/signup/")
    page.get_by_label("Email").fill("frank@example.com")
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.get_by_label("Organization name").fill("Frank Inference")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    wait_for_mail(1)
    page.goto(link_in(mail.outbox[0].body, "/accounts/confirm-email/"))
    page.get_by_test_id("confirm-email").click()
    page.get_by_role("button", name="Log out").click()
    log_in(page, live_url, "frank@example.com")
    expect(page.get_by_test_id("balance-available")).to_have_text("$0.00")

    page.goto(f"{live_url}/billing/top-up/")
    page.get_by_label("Amount (USD)").fill("20")
    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_test_id("top-up-status")).to_contain_text("Paid: $20.00 was added", timeout=20_000)

    page.goto(f"{live_url}/")
    expect(page.get_by_test_id("balance-available")).to_have_text("$20.00")
    top_up = TopUp.objects.get(organization__name="Frank Inference")
    assert (top_up.status, top_up.amount_nano) == ("succeeded", 20 * 10**9)
