"""In a real browser: a developer registers a webhook endpoint, reveals its secret, sends a test event, and sees
the delivery in the log; the receiver (a real HTTP server) gets it signed as the README's recipe verifies."""

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect

from tests.billing.webhooks import receiver as receivers
from tests.billing.webhooks.test_deliveries import verify_recipe
from tests.e2e.test_signup import PASSWORD, log_in

pytestmark = pytest.mark.e2e
receiver = receivers.receiver  # the fixture


def test_register_an_endpoint_and_send_a_test_event(live_url, page, org_a, bob, receiver, settings):
    # The receiver listens on 127.0.0.1, which an operator allows with this setting; Celery runs in-process.
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    bob.set_password(PASSWORD)
    bob.save()
    EmailAddress.objects.create(user=bob, email=bob.email, verified=True, primary=True)
    log_in(page, live_url, bob.email)

    page.goto(f"{live_url}/settings/notifications/")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Endpoint URL").fill("hooks.example.com/in")
    page.get_by_label("balance.low — Balance low").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator(".has-error")).to_contain_text("http:// or https://")

    page.get_by_label("Endpoint URL").fill(receiver.url)
    page.get_by_label("top_up.failed — Top-up failed").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("endpoint-url")).to_have_text(receiver.url)
    secret = page.get_by_test_id("webhook-secret").input_value()
    assert secret.startswith("whsec_")

    page.get_by_test_id("send-test").click()
    expect(page.get_by_test_id("delivery-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("attempt")).to_contain_text("HTTP 200")
    (request,) = receiver.requests
    assert request.headers["Webhook-Event-Type"] == "webhook.test"
    assert verify_recipe()(request.body, request.headers["Webhook-Signature"], secret)

    page.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_test_id("attempt")).to_have_count(2)
    assert len(receiver.requests) == 2
