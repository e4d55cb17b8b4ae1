"""Collection and dunning against localstripe: a failed payment is retried on the schedule with an email at each
step; past the grace period postpaid use is suspended (the overdraft withdrawn, calls that credit does not cover
refused) and restored at once when the invoice is paid; progressive billing invoices mid-period."""

import pytest
import time_machine
from django.core import mail

from accounts.models import Role
from billing.invoicing import selectors, tasks
from billing.invoicing.models import BillingProfile, Invoice
from billing.invoicing.services import stripe_push
from billing.invoicing.services.collection import invoice_paid
from billing.ledger import services as ledger
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import Grant, Wallet
from billing.payments import services as payments
from billing.payments.models import AutoTopUp
from billing.payments.stripe_client import stripe_client
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.billing.invoicing.conftest import at, booked_at, call, fund, usd
from tests.billing.invoicing.test_stripe import _event, closed_october, deliver, save_card
from tests.billing.payments.helpers import CARD_DECLINED_AT_CHARGE, CARD_OK

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner(org):
    user = UserFactory(username="olga@acme.example", email="olga@acme.example")
    MembershipFactory(user=user, organization=org, role=Role.OWNER)
    return user


def pushed_with_declined_card(org) -> Invoice:
    save_card(org, CARD_DECLINED_AT_CHARGE)
    invoice = closed_october(org)
    with time_machine.travel(at("2026-11-01 02:00"), tick=False):
        return stripe_push.invoice_stripe_push(invoice_id=invoice.pk)


def replace_card(org, number=CARD_OK) -> None:
    client = stripe_client()
    card = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(
        card.id, params={"customer": payments.stripe_customer_ensure(organization_id=org.pk)}
    )
    AutoTopUp.objects.filter(organization=org).update(stripe_payment_method_id=card.id)


def run_dunning(moment: str) -> dict:
    with time_machine.travel(at(moment), tick=False):
        return tasks.invoices_dunning_task.apply().get()


def test_a_card_that_fails_then_succeeds_on_retry(org, owner, localstripe):
    invoice = pushed_with_declined_card(org)
    assert invoice.payment_failed_at == at("2026-11-01 02:00")
    assert invoice.next_payment_attempt_at == at("2026-11-04 02:00")
    assert [m.subject for m in mail.outbox] == [f"[Token Billing] Payment of invoice {invoice.number} failed"]
    assert "olga@acme.example" in mail.outbox[0].to and f"/billing/invoices/{invoice.pk}/" in mail.outbox[0].body
    assert run_dunning("2026-11-04 01:59") == {"retried": 0, "suspended": 0}
    replace_card(org)
    assert run_dunning("2026-11-04 02:00") == {"retried": 1, "suspended": 0}
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts, invoice.next_payment_attempt_at) == ("paid", 2, None)
    assert Grant.objects.get(source_ref=f"invoice:{invoice.number}").amount_nano == usd("0.15")
    assert len(mail.outbox) == 1  # no "failed again" once paid
    assert run_dunning("2026-11-06 02:00") == {"retried": 0, "suspended": 0}


def test_a_card_that_keeps_failing_suspends_postpaid_use_until_paid(org, owner, localstripe):
    invoice = pushed_with_declined_card(org)
    for day in ("04", "06", "08"):
        assert run_dunning(f"2026-11-{day} 02:00") == {"retried": 1, "suspended": 0}
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts, invoice.dunning_step, invoice.next_payment_attempt_at) == (
        "finalized",
        4,
        3,
        None,
    )
    assert [m.subject.endswith("failed again") for m in mail.outbox] == [False, True, True, True]
    assert "last automatic attempt" in mail.outbox[-1].body
    # Within the grace period the overdraft still works.
    wallet = Wallet.objects.get(organization=org)
    assert (wallet.overdraft_limit_nano, selectors.suspension_of(organization_id=org.pk)) == (usd("5.00"), None)
    assert run_dunning("2026-11-11 02:00") == {"retried": 0, "suspended": 1}
    assert run_dunning("2026-11-11 03:00") == {"retried": 0, "suspended": 0}
    suspension = selectors.suspension_of(organization_id=org.pk)
    assert suspension.invoice == invoice
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.overdraft_limit_nano) == (-usd("0.15045"), usd("0.15045"))
    with pytest.raises(InsufficientCredit):
        ledger.hold_place(wallet_id=wallet.pk, amount_nano=1, idempotency_key="after-suspension", actor="test")
    # Prepaid credit still pays for calls (the top-up first repays the debt, then is spent).
    fund(org, "1.00")
    ledger.hold_place(wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="prepaid", actor="test")
    with pytest.raises(InsufficientCredit):
        ledger.hold_place(wallet_id=wallet.pk, amount_nano=1, idempotency_key="beyond", actor="test")
    # Paid (the customer paid Stripe's invoice page): everything is restored at once.
    assert deliver(_event(invoice, "invoice.paid", 1, amount_paid=15, status="paid")) == "processed"
    wallet.refresh_from_db()
    assert wallet.overdraft_limit_nano == usd("5.00")
    assert selectors.suspension_of(organization_id=org.pk) is None
    ledger.hold_place(wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="restored", actor="test")


def test_progressive_billing_invoices_mid_period_when_debt_crosses_the_threshold(org, localstripe):
    BillingProfile.objects.create(organization=org, progressive_threshold_nano=usd("0.50"))
    with booked_at(at("2026-10-02 00:00")):
        fund(org, "0.10")
        ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="test")
        call(org, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # 0.35, 0.25 unfunded
    with time_machine.travel(at("2026-10-10 12:00")):
        assert tasks.invoices_close_due_task.apply().get() == 0  # 0.25 < 0.50: not yet
    with booked_at(at("2026-10-12 00:00")):
        call(org, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # 0.35 more: 0.60 owed
    with time_machine.travel(at("2026-10-12 12:00")):
        assert tasks.invoices_close_due_task.apply().get() == 1
        tasks.invoices_close_organizations_task.apply(args=[[org.pk]])
    cut = Invoice.objects.get(organization=org)
    assert (cut.progressive, cut.period_start, cut.period_end) == (True, at("2026-10-01 00:00"), at("2026-10-12 11:59"))
    assert (cut.charges_nano, cut.credit_applied_nano, cut.total_minor) == (usd("0.70"), -usd("0.10"), 60)
    assert cut.stripe_invoice_id  # pushed (no saved card: dunning has begun)
    with booked_at(at("2026-10-20 00:00")):
        call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=0)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        tasks.invoices_close_organizations_task.apply(args=[[org.pk]])
    rest = Invoice.objects.get(organization=org, progressive=False)
    assert (rest.period_start, rest.period_end, rest.charges_nano) == (cut.period_end, at("2026-11-01 00:00"), 150_000)


def test_the_web_ui_shows_a_banner_while_an_invoice_is_unpaid(org, owner, localstripe, client):
    client.force_login(owner)
    assert "unpaid-invoice-banner" not in client.get("/billing/auto-top-up/").content.decode()
    invoice = pushed_with_declined_card(org)
    page = client.get("/billing/auto-top-up/").content.decode()
    assert "unpaid-invoice-banner" in page and f"The payment of invoice {invoice.number} failed." in page
    run_dunning("2026-11-11 02:00")
    page = client.get("/billing/auto-top-up/").content.decode()
    assert "API calls that prepaid credit does not cover are refused" in page
    invoice_paid(invoice_id=invoice.pk)
    assert "unpaid-invoice-banner" not in client.get("/billing/auto-top-up/").content.decode()


def test_the_banner_offers_payment_only_to_who_may_pay(org, owner, localstripe, client):
    developer = UserFactory(username="dev@acme.example")
    MembershipFactory(user=developer, organization=org, role=Role.DEVELOPER)
    pushed_with_declined_card(org)
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert "unpaid-invoice-banner" in page and "update the saved card" in page
    client.force_login(developer)
    page = client.get("/").content.decode()
    assert "unpaid-invoice-banner" in page and "An owner or billing admin of the organization can pay it." in page
    assert "update the saved card" not in page and "Pay the invoice" not in page


def test_a_sent_invoice_unpaid_past_its_due_date_and_the_grace_suspends_too(org, localstripe):
    BillingProfile.objects.create(organization=org, collection_method="send_invoice", days_until_due=15)
    invoice = closed_october(org)  # finalized 2026-11-01 01:00:01: due 2026-11-16, suspended 10 days later
    with time_machine.travel(at("2026-11-01 02:00"), tick=False):
        stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    assert run_dunning("2026-11-26 01:00") == {"retried": 0, "suspended": 0}
    assert run_dunning("2026-11-26 01:00:02") == {"retried": 0, "suspended": 1}
    assert selectors.suspension_of(organization_id=org.pk).invoice == invoice
