"""Credit notes and voids at Stripe (localstripe, through tooling/localstripe_launcher.py, which adds Stripe's credit
notes): a credit note lowers Stripe's open invoice, which then collects only what is left; a void voids it at
Stripe first; Stripe's invoice.* events replayed afterwards change nothing more."""

import pytest

from billing.invoicing.models import BillingProfile, Invoice, LineKind
from billing.invoicing.services import collection, stripe_push
from billing.invoicing.services.credit_notes import LineCredit, credit_note_issue, invoice_void
from billing.ledger.models import Grant, Wallet
from billing.payments import services as payments
from billing.payments.stripe_client import stripe_client
from tests.billing.invoicing.conftest import usd
from tests.billing.invoicing.test_credit_notes import line_of
from tests.billing.invoicing.test_stripe import closed_october, deliver, save_card, stripe_events
from tests.billing.payments.fixtures import eager_celery  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


def sent(org) -> Invoice:
    """October's invoice, at Stripe and open (sent with net terms): 0.15 due."""
    BillingProfile.objects.create(organization=org, collection_method="send_invoice", days_until_due=15)
    return stripe_push.invoice_stripe_push(invoice_id=closed_october(org).pk)


def test_a_credit_note_lowers_stripes_open_invoice_and_the_rest_is_collected(org, localstripe):
    invoice = sent(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    note = credit_note_issue(
        invoice_id=invoice.pk,
        lines=[LineCredit(plan.position, usd("0.04"))],
        reason="Plan fee overcharged",
        idempotency_key="cn-1",
        actor="staff",
    ).credit_note
    note.refresh_from_db()
    assert note.stripe_credit_note_id.startswith("cn_")
    client = stripe_client()
    remote_note = client.v1.credit_notes.retrieve(note.stripe_credit_note_id)
    assert (remote_note.amount, remote_note.invoice, remote_note.metadata["number"]) == (
        4,
        invoice.stripe_invoice_id,
        note.number,
    )
    remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.total, remote.amount_due, remote.status) == (15, 11, "open")
    # Pushing the credit note again (a retried task) makes no second one at Stripe.
    from billing.invoicing.services.credit_notes import credit_note_stripe_push

    Invoice.objects.filter(pk=note.pk).update(stripe_credit_note_id="")
    credit_note_stripe_push(credit_note_id=note.pk)
    assert client.v1.invoices.retrieve(invoice.stripe_invoice_id).amount_due == 11
    # The customer pays what is left; its payment repays the rest of the debt, to the cent.
    paid = client.v1.invoices.pay(invoice.stripe_invoice_id, params={"payment_method": save_card(org)})
    assert (paid.status, paid.amount_paid) == ("paid", 11)
    collection.invoice_paid(invoice_id=invoice.pk, amount_paid_minor=paid.amount_paid)
    assert Wallet.objects.get(organization=org).unfunded_nano == usd("0.00045")


def test_a_credit_note_for_everything_due_leaves_stripes_invoice_paid_with_nothing_booked_twice(org, localstripe):
    invoice = sent(org)
    gpt4o = line_of(invoice, LineKind.USAGE, "gpt-4o", "output")  # 0.20, more than the 0.15 due
    note = credit_note_issue(
        invoice_id=invoice.pk, lines=[LineCredit(gpt4o.position)], reason="Outage", idempotency_key="k", actor="s"
    ).credit_note
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.amount_due, remote.status) == (0, "paid")
    for event in stripe_events(invoice.stripe_invoice_id) * 2:
        deliver(event)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_grant_id) == ("paid", None)
    # The ledger: 0.20 given back; 0.15045 of it repaid the debt, the rest is the customer's credit.
    wallet = Wallet.objects.get(organization=org)
    assert Grant.objects.get(pk=note.credit_grant_id).amount_nano == usd("0.20")
    assert (wallet.unfunded_nano, wallet.available_nano) == (0, usd("0.20") - usd("0.15045"))


def test_void_voids_at_stripe_first_and_its_events_replayed_make_no_second_credit_note(org, localstripe):
    invoice = sent(org)
    result = invoice_void(invoice_id=invoice.pk, reason="Billed in error", actor="staff")
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert remote.status == "void"
    for event in stripe_events(invoice.stripe_invoice_id) * 2:
        deliver(event)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.stripe_status) == ("void", "void")
    assert Invoice.objects.filter(kind="credit_note", corrects=invoice).get().pk == result.credit_note.pk
    assert Wallet.objects.get(organization=org).unfunded_nano == 0


def test_a_void_at_stripes_dashboard_writes_the_same_credit_note(org, localstripe):
    invoice = sent(org)
    stripe_client().v1.invoices.void_invoice(invoice.stripe_invoice_id)
    for event in stripe_events(invoice.stripe_invoice_id):
        deliver(event)
    invoice.refresh_from_db()
    assert invoice.status == "void"
    note = Invoice.objects.get(kind="credit_note", corrects=invoice)
    assert (note.reason, note.total_minor, note.idempotency_key) == ("Voided at Stripe.", -15, "void")
    assert Wallet.objects.get(organization=org).unfunded_nano == 0


def test_an_invoice_paid_at_stripe_cannot_be_voided(org, localstripe):
    invoice = sent(org)
    stripe_client().v1.invoices.pay(invoice.stripe_invoice_id, params={"payment_method": save_card(org)})
    from billing.invoicing.errors import InvoiceConflict

    with pytest.raises(InvoiceConflict, match="paid"):
        invoice_void(invoice_id=invoice.pk, reason="too late", actor="s")
    assert not Invoice.objects.filter(kind="credit_note").exists()
    assert Invoice.objects.get(pk=invoice.pk).status == "finalized"


def test_a_credit_note_issued_before_the_push_lowers_what_the_card_is_charged(org, localstripe):
    save_card(org)
    invoice = closed_october(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    note = credit_note_issue(
        invoice_id=invoice.pk,
        lines=[LineCredit(plan.position, usd("0.05"))],
        reason="r",
        idempotency_key="k",
        actor="s",
    ).credit_note
    invoice = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.total, remote.amount_paid, remote.status) == (15, 10, "paid")
    assert Invoice.objects.get(pk=note.pk).stripe_credit_note_id
    assert invoice.status == "paid"
    assert Grant.objects.get(pk=invoice.payment_grant_id).amount_nano == usd("0.10")
    assert Wallet.objects.get(organization=org).unfunded_nano == usd("0.00045")


def test_collect_now_charges_the_new_card_once_and_marking_uncollectible_goes_to_stripe_first(org, localstripe):
    from billing.invoicing.services import actions
    from billing.payments.models import AutoTopUp
    from tests.billing.payments.helpers import CARD_DECLINED_AT_CHARGE, CARD_OK

    save_card(org, CARD_DECLINED_AT_CHARGE)
    invoice = stripe_push.invoice_stripe_push(invoice_id=closed_october(org).pk)
    assert (invoice.status, invoice.payment_attempts) == ("finalized", 1)
    # The customer saves a card that works; staff collect now.
    client = stripe_client()
    card = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": CARD_OK, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(
        card.id, params={"customer": payments.stripe_customer_ensure(organization_id=org.pk)}
    )
    AutoTopUp.objects.filter(organization=org).update(stripe_payment_method_id=card.id)
    collected = actions.invoice_collect_now(invoice_id=invoice.pk, reason="Card replaced", actor="staff")
    assert (collected.status, collected.payment_attempts) == ("paid", 2)
    assert Wallet.objects.get(organization=org).unfunded_nano == usd("0.00045")
    from billing.invoicing.errors import InvoiceConflict

    with pytest.raises(InvoiceConflict):  # paid: nothing to collect, nothing to mark
        actions.invoice_collect_now(invoice_id=invoice.pk, reason="again", actor="staff")
    with pytest.raises(InvoiceConflict):
        actions.invoice_mark_uncollectible(invoice_id=invoice.pk, reason="x", actor="staff")


def test_mark_uncollectible_marks_stripes_invoice_first(org, localstripe):
    from billing.invoicing.services import actions

    invoice = sent(org)
    marked = actions.invoice_mark_uncollectible(invoice_id=invoice.pk, reason="Customer gone", actor="staff")
    assert (marked.status, marked.stripe_status) == ("uncollectible", "uncollectible")
    assert stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id).status == "uncollectible"
    for event in stripe_events(invoice.stripe_invoice_id) * 2:
        deliver(event)
    assert Invoice.objects.get(pk=invoice.pk).status == "uncollectible"
    # An uncollectible invoice can still be voided, with its credit note.
    invoice_void(invoice_id=invoice.pk, reason="Written off", actor="staff")
    assert Invoice.objects.get(pk=invoice.pk).status == "void"
