"""The harness itself: the live server answers over a socket, localstripe speaks to the official library, and
the browser renders a page of the product."""

import httpx
import pytest
import stripe

from billing.payments.stripe_client import stripe_client


def test_live_server_answers(live_url):
    response = httpx.get(f"{live_url}/accounts/login/")
    assert response.status_code == 200


def test_localstripe_speaks_to_the_stripe_library(localstripe):
    customer = stripe_client().v1.customers.create(params={"email": "alice@example.com"})
    assert customer.id.startswith("cus_")
    assert isinstance(customer, stripe.Customer)


@pytest.mark.e2e
def test_browser_renders_the_login_page(live_url, page):
    page.goto(f"{live_url}/accounts/login/")
    assert page.locator("input[name=login]").count() == 1
