"""In a real browser: an owner subscribes, upgrades mid-period with a proration preview that is exactly what the
ledger then debits, and buys a reserved commitment (a double submit buys once)."""

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect

from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import JournalTransaction
from billing.pricing import services
from billing.pricing.models import Commitment, CommitmentCharge, SubscriptionPeriod
from billing.pricing.services import AllowanceSpec
from core.money import money_display
from tests.e2e.test_signup import PASSWORD, log_in

pytestmark = pytest.mark.e2e
USD = 10**9


@pytest.fixture
def owner(org_a, alice):
    alice.set_password(PASSWORD)
    alice.save()
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    services.price_book_seed()
    ledger.grant_create(organization_id=org_a.pk, kind="paid", amount_nano=200 * USD, idempotency_key="e2e", actor="t")
    return alice


def _available(org) -> int:
    return ledger_selectors.wallet_balance(organization_id=org.pk).available_nano


def _debited(transaction_id: int) -> int:
    """What a ledger transaction took from the organization's wallet."""
    transaction = JournalTransaction.objects.get(pk=transaction_id)
    return sum(entry.amount_nano for entry in transaction.entries.all() if entry.amount_nano > 0)


def test_upgrade_with_a_proration_preview_that_matches_the_ledger(live_url, page, org_a, owner):
    services.plan_create(
        slug="starter",
        name="Starter",
        fee_nano=30 * USD,
        allowances=[AllowanceSpec(included_tokens=1_000_000, rollover_cap_tokens=100_000, model="gpt-4o")],
    )
    services.plan_create(slug="scale", name="Scale", fee_nano=90 * USD, usage_discount_bps=1_500)
    log_in(page, live_url, owner.email)
    page.get_by_text("Billing", exact=True).click()
    page.get_by_role("link", name="Plans").click()
    expect(page.get_by_test_id("current-plan")).to_contain_text("No plan")

    page.locator('[data-plan="starter"]').get_by_test_id("plan-choose").click()
    expect(page.get_by_test_id("preview-net")).to_have_text("$30.00")
    page.get_by_test_id("plan-confirm").click()
    expect(page.get_by_text("Subscribed to the starter plan.")).to_be_visible()
    expect(page.get_by_test_id("current-plan")).to_have_text("Starter")
    expect(page.get_by_test_id("quota-left")).to_have_text("1,000,000")
    expect(page.get_by_test_id("next-renewal-fee")).to_have_text("$30.00")

    page.locator('[data-plan="scale"]').get_by_test_id("plan-choose").click()
    previewed = ("preview-charge", "preview-credit", "preview-net")
    shown = {name: page.get_by_test_id(name).inner_text() for name in previewed}
    before = _available(org_a)
    page.get_by_test_id("plan-confirm").click()
    expect(page.get_by_text("Your plan changed from starter to scale.")).to_be_visible()
    expect(page.get_by_test_id("current-plan")).to_have_text("Scale")

    change = SubscriptionPeriod.objects.get(kind="change")
    net = change.fee_nano - change.credit_nano
    assert shown == {
        "preview-charge": money_display(change.fee_nano, "USD"),
        "preview-credit": "-" + money_display(change.credit_nano, "USD"),
        "preview-net": money_display(net, "USD"),
    }
    assert _debited(change.debit_transaction_id) == net
    assert before - _available(org_a) == net

    # Going back to the preview of a plan change confirmed elsewhere meanwhile: refused, nothing charged.
    page.locator('[data-plan="starter"]').get_by_test_id("plan-choose").click()
    services.subscription_change(subscription_id=change.subscription_id, plan_slug="starter")
    services.subscription_change(subscription_id=change.subscription_id, plan_slug="scale")
    left = _available(org_a)
    page.get_by_test_id("plan-confirm").click()
    expect(page.get_by_test_id("plans-error")).to_contain_text("Your plan changed since this preview")
    assert _available(org_a) == left


def test_buy_a_commitment(live_url, page, org_a, owner):
    offer = services.commitment_offer_create(
        name="Llama 70B, 10M tokens a month",
        model="llama-3.1-70b-instruct",
        committed_tokens_per_month=10_000_000,
        term_months=3,
        discount_bps=2_500,
        payment="upfront",
        blended_price_micro_per_mtok=880_000,
    )
    log_in(page, live_url, owner.email)
    page.goto(f"{live_url}/billing/plans/")
    page.locator(f'[data-offer="{offer.pk}"]').get_by_test_id("offer-choose").click()
    expect(page.get_by_test_id("preview-discount")).to_have_text("25%")
    expect(page.get_by_test_id("preview-monthly-fee")).to_have_text("$6.60")
    expect(page.get_by_test_id("preview-total")).to_have_text("$19.80")
    expect(page.get_by_test_id("preview-net")).to_have_text("$19.80")
    expect(page.get_by_test_id("use-or-lose")).to_be_visible()
    before = _available(org_a)
    page.get_by_test_id("commitment-confirm").click()
    expect(page.get_by_text("bought.")).to_be_visible()
    expect(page.get_by_test_id("commitment-drawdown")).to_have_text("0 (0%)")

    # The browser's back button and a second submit of the same form buy nothing more.
    page.go_back()
    page.get_by_test_id("commitment-confirm").click()
    expect(page.get_by_text("already bought")).to_be_visible()
    commitment = Commitment.objects.get(organization=org_a)
    charge = CommitmentCharge.objects.get(commitment=commitment)
    assert (commitment.total_fee_nano, charge.amount_nano) == (19_800_000_000, 19_800_000_000)
    assert _debited(charge.debit_transaction_id) == charge.amount_nano
    assert before - _available(org_a) == charge.amount_nano
