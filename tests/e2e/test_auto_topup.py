"""Auto top-up in Chromium: save a card and the settings on the page; then usage (ledger debits followed by the
check the gateway makes after each settle) crosses the threshold and the card is charged once."""

import pytest
from playwright.sync_api import expect

from billing.ledger import services as ledger
from billing.payments import services
from billing.payments.models import TopUp
from billing.payments.services.auto_topup import auto_topup_disable

# The payments fixtures (webhooks from localstripe to the live server, eager Celery, the local cache reset), imported
# so pytest finds them here; the tests' parameters name them, which ruff would report as redefinitions.
# ruff: noqa: F811
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import (
    CARD_OK,
    available,
    browser_confirm_card_setup,
    browser_fill_card,
    browser_login,
    customer_create,
    usd,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_auto_top_up_fires_once_when_usage_crosses_the_threshold(live_url, page, stripe_webhooks, eager_celery):
    _, organization = customer_create("frank@example.com")
    ledger.grant_create(
        organization_id=organization.pk, kind="promotional", amount_nano=usd("10"), idempotency_key="welcome", actor="t"
    )
    browser_login(page, live_url, "frank@example.com", next_path="/billing/auto-top-up/")
    expect(page.get_by_test_id("saved-card")).to_have_text("No card saved yet.")

    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_test_id("saved-card")).to_have_text("Card ending 4242")

    form = page.get_by_test_id("auto-top-up-form")
    form.get_by_label("Threshold (USD)").fill("5.00")
    form.get_by_label("Amount (USD)").fill("20.00")
    form.get_by_label("Daily cap (USD)").fill("50.00")
    form.get_by_label("Turn auto top-up on").check()
    form.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Auto top-up settings saved.")).to_be_visible()
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("On")
    assert not TopUp.objects.exists()  # $10 is above the $5 threshold

    def use(amount: str, key: str) -> None:
        ledger.wallet_debit(organization_id=organization.pk, amount_nano=usd(amount), idempotency_key=key, actor="t")
        services.auto_topup_check(organization_id=organization.pk, available_nano=available(organization.pk))

    use("4.00", "request-1")  # $6 left
    assert not TopUp.objects.exists()
    use("2.00", "request-2")  # $4 left: below the threshold
    use("1.00", "request-3")  # still below, charge in flight
    use("1.00", "request-4")
    wait_for(lambda: available(organization.pk) == usd("22"), what="the automatic top-up's webhook")
    use("1.00", "request-5")  # $21: above again
    [top_up] = TopUp.objects.filter(organization=organization)
    assert (top_up.kind, top_up.status, top_up.amount_nano) == ("auto", "succeeded", usd("20"))

    page.reload()
    expect(page.get_by_test_id("balance-available")).to_have_text("$21.00")
    expect(page.get_by_test_id("auto-top-ups")).to_contain_text("Paid")
    expect(page.get_by_test_id("auto-top-ups").locator("tbody tr")).to_have_count(1)


def _checkbox(page):
    return page.get_by_test_id("auto-top-up-form").get_by_label("Turn auto top-up on")


def test_the_checkbox_agrees_with_the_status(live_url, page, stripe_webhooks, localstripe):
    _, organization = customer_create("hana@example.com")
    browser_login(page, live_url, "hana@example.com", next_path="/billing/auto-top-up/")
    # Never set up: Off, and the box is not ticked (it used to be).
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    expect(_checkbox(page)).not_to_be_checked()

    browser_fill_card(page, CARD_OK)
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_test_id("saved-card")).to_have_text("Card ending 4242")
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    expect(_checkbox(page)).not_to_be_checked()

    _checkbox(page).check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("On")
    expect(_checkbox(page)).to_be_checked()

    # Turned off by the system (a declined charge): both say so.
    auto_topup_disable(organization_id=organization.pk, reason="Your card was declined.")
    page.reload()
    expect(page.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    expect(_checkbox(page)).not_to_be_checked()


def test_the_low_balance_notice_says_when_auto_top_up_is_on(live_url, page, stripe_webhooks, localstripe):
    user, organization = customer_create("ivan@example.com")
    ledger.grant_create(
        organization_id=organization.pk, kind="promotional", amount_nano=usd("10"), idempotency_key="seed", actor="t"
    )
    ledger.wallet_debit(organization_id=organization.pk, amount_nano=usd("7"), idempotency_key="use", actor="t")
    browser_login(page, live_url, "ivan@example.com", next_path="/")
    notice = page.get_by_test_id("notice-low-balance")
    expect(notice).to_contain_text("Available credit is $3.00")
    expect(notice).to_contain_text("set up auto top-up")

    secret = services.auto_topup_card_start(organization_id=organization.pk, actor=user)
    setup_intent = browser_confirm_card_setup(localstripe.url, secret, CARD_OK)
    services.auto_topup_card_save(organization_id=organization.pk, setup_intent_id=setup_intent["id"], actor=user)
    services.auto_topup_update(
        organization_id=organization.pk,
        enabled=True,
        threshold_nano=usd("2"),
        amount_nano=usd("20"),
        daily_cap_nano=usd("40"),
        actor=user,
    )
    page.reload()
    expect(notice).to_contain_text("Auto top-up is on: it adds $20.00 when credit falls below $2.00.")
    expect(notice).not_to_contain_text("set up auto top-up")
    expect(notice.get_by_role("link", name="change auto top-up")).to_have_attribute("href", "/billing/auto-top-up/")
