"""Stripe: each finalized invoice is pushed to Stripe (localstripe, through tooling/localstripe_launcher.py) as
invoice items and an invoice whose total equals the product's to the cent; retries make no second Stripe invoice;
Stripe's invoice.* events, replayed and in any order, move the invoice to paid (once), uncollectible or void."""

import itertools
import json

import pytest
import time_machine

from billing.invoicing import services
from billing.invoicing.models import BillingProfile, Invoice
from billing.invoicing.services import stripe_push
from billing.ledger.models import Grant, Wallet
from billing.payments import services as payments
from billing.payments.models import AutoTopUp
from billing.payments.stripe_client import stripe_client
from tests.billing.invoicing.conftest import at, booked_at
from tests.billing.invoicing.test_close import OCT, october
from tests.billing.payments.helpers import CARD_DECLINED_AT_CHARGE, CARD_OK, stripe_signature

pytestmark = pytest.mark.django_db(transaction=True)


def save_card(org, number=CARD_OK) -> str:
    """A card saved for the organization (as the auto top-up page saves one), at Stripe and in the product."""
    client = stripe_client()
    customer = payments.stripe_customer_ensure(organization_id=org.pk)
    card = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(card.id, params={"customer": customer})
    AutoTopUp.objects.create(organization=org, stripe_payment_method_id=card.id, card_last4=number[-4:])
    return card.id


def closed_october(org) -> Invoice:
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        return services.invoice_close(organization_id=org.pk, period_start=OCT)


def deliver(event: dict) -> str:
    """An event through the stored-event machinery, signed as Stripe signs it; returns its outcome."""
    payload = json.dumps(event)
    stored = payments.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
    return payments.stripe_event_process(stripe_event_id=stored.pk).status


def stripe_events(stripe_invoice_id: str) -> list[dict]:
    """The invoice.* events localstripe made for this invoice, oldest first."""
    # Every page: localstripe keeps the whole test session's events.
    events = stripe_client().v1.events.list(params={"limit": 100}).auto_paging_iter()
    mine = [e.to_dict() for e in events if e.type.startswith("invoice.") and e.data.object.id == stripe_invoice_id]
    return sorted(mine, key=lambda e: e["created"])


def test_a_pushed_invoice_equals_the_product_to_the_cent_and_is_paid_once(org, localstripe):
    save_card(org)
    invoice = closed_october(org)
    wallet = Wallet.objects.get(organization=org)
    assert wallet.unfunded_nano == 150_450_000
    invoice = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.total, remote.currency, remote.status, remote.metadata["invoice_id"]) == (
        15,
        "usd",
        "paid",
        str(invoice.pk),
    )
    amounts = [line.amount for line in remote.lines.data]
    assert sum(amounts) == invoice.total_minor == 15
    assert -50 in amounts and -10 in amounts  # credit applied, as negative items
    assert (invoice.status, invoice.stripe_status) == ("paid", "paid")
    # The payment repaid the overdraft the invoice billed, to the cent; the sub-cent rest is carried.
    wallet.refresh_from_db()
    assert wallet.unfunded_nano == 450_000
    # Stripe's events, replayed twice, change nothing more.
    events = stripe_events(invoice.stripe_invoice_id)
    assert {e["type"] for e in events} >= {"invoice.finalized", "invoice.paid", "invoice.payment_succeeded"}
    for event in events * 2:
        deliver(event)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert Grant.objects.filter(source_ref=f"invoice:{invoice.number}").count() == 1


def test_a_push_that_died_after_stripe_created_the_invoice_makes_no_second_one(org, localstripe):
    save_card(org)
    invoice = closed_october(org)
    customer = payments.stripe_customer_ensure(organization_id=org.pk)
    first = stripe_push._create(invoice, customer)  # the dead worker's calls, its answer lost
    invoice = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    again = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    assert invoice.stripe_invoice_id == again.stripe_invoice_id == first
    listed = stripe_client().v1.invoices.list(params={"customer": customer})
    assert [i.id for i in listed.data] == [first]
    remote = stripe_client().v1.invoices.retrieve(first)
    assert len(remote.lines.data) == len(stripe_push.stripe_items(invoice)) == 6
    assert remote.total == 15


def test_a_sent_invoice_waits_for_payment_with_net_terms(org, localstripe):
    BillingProfile.objects.create(organization=org, collection_method="send_invoice", days_until_due=15)
    invoice = stripe_push.invoice_stripe_push(invoice_id=closed_october(org).pk)
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.collection_method, remote.status, remote.total) == ("send_invoice", "open", 15)
    assert (invoice.status, invoice.collection_method, invoice.days_until_due) == ("finalized", "send_invoice", 15)


def test_an_invoice_with_nothing_due_is_still_issued(org, localstripe):
    with booked_at(at("2026-10-03 00:00")):
        from tests.billing.invoicing.conftest import call, fund

        fund(org, "5.00")
        call(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    invoice = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    assert (remote.total, remote.status, invoice.status, invoice.total_minor) == (0, "paid", "paid", 0)
    assert invoice.payment_grant_id is None


def test_a_declined_card_leaves_the_invoice_open_with_the_failure(org, localstripe):
    save_card(org, CARD_DECLINED_AT_CHARGE)
    invoice = stripe_push.invoice_stripe_push(invoice_id=closed_october(org).pk)
    assert (invoice.status, invoice.stripe_status) == ("finalized", "open")
    assert invoice.payment_error
    for event in stripe_events(invoice.stripe_invoice_id):
        deliver(event)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == ("finalized", 1)


def _event(invoice: Invoice, kind: str, n: int, **fields) -> dict:
    obj = {"id": invoice.stripe_invoice_id, "object": "invoice", "metadata": {"invoice_id": str(invoice.pk)}} | fields
    return {"id": f"evt_{invoice.pk}_{kind}_{n}", "object": "event", "type": kind, "data": {"object": obj}}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_invoice_events_in_any_order_and_repeated_end_paid_once(org, order):
    invoice = closed_october(org)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=f"in_test{invoice.pk}")
    invoice.refresh_from_db()
    events = [
        _event(invoice, "invoice.finalized", 0, status="open"),
        _event(invoice, "invoice.payment_failed", 1, attempt_count=1, status="open"),
        _event(invoice, "invoice.paid", 2, amount_paid=15, status="paid"),
        _event(invoice, "invoice.payment_succeeded", 3, amount_paid=15, status="paid"),
    ]
    for index in order + order:
        deliver(events[index])
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_at is not None) == ("paid", True)
    assert Grant.objects.filter(source_ref=f"invoice:{invoice.number}").get().amount_nano == 150_000_000
    # A void after the payment is not taken.
    assert deliver(_event(invoice, "invoice.voided", 9)) == "ignored"
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_uncollectible_then_paid_or_void(org):
    invoice = closed_october(org)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id="in_u")
    invoice.refresh_from_db()
    assert deliver(_event(invoice, "invoice.marked_uncollectible", 1)) == "processed"
    invoice.refresh_from_db()
    assert invoice.status == "uncollectible"
    assert deliver(_event(invoice, "invoice.voided", 2)) == "processed"
    invoice.refresh_from_db()
    assert invoice.status == "void"
    assert deliver(_event(invoice, "invoice.paid", 3, amount_paid=15)) == "ignored"


def test_an_event_for_an_invoice_of_someone_else_is_ignored(db):
    event = {"id": "evt_x", "type": "invoice.paid", "data": {"object": {"id": "in_nope", "metadata": {}}}}
    assert deliver(event) == "ignored"


def test_another_systems_invoice_with_the_same_metadata_id_is_not_ours(org):
    invoice = closed_october(org)  # not pushed yet: no Stripe id stored
    foreign = {"id": "in_foreign", "metadata": {"invoice_id": str(invoice.pk), "number": "ACME-7"}, "amount_paid": 15}
    assert deliver({"id": "evt_foreign", "type": "invoice.paid", "data": {"object": foreign}}) == "ignored"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.stripe_invoice_id) == ("finalized", "")


@pytest.mark.parametrize("crash", ["after_items", "after_finalize", "after_charge"])
def test_a_push_killed_before_or_after_any_stripe_call_resumes_to_one_paid_stripe_invoice(
    org, localstripe, monkeypatch, crash
):
    save_card(org)
    invoice = closed_october(org)
    real_pay = stripe_push.invoice_stripe_pay

    def killed(*args, **kwargs):
        raise RuntimeError("worker killed")

    def charged_then_killed(**kwargs):
        real_pay(**kwargs)
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        if crash == "after_items":  # the items are at Stripe; the invoice is not
            patch.setattr(stripe_push, "saved_card", killed)
        elif crash == "after_finalize":  # finalized at Stripe, not charged
            patch.setattr(stripe_push, "invoice_stripe_pay", killed)
        else:  # charged at Stripe, the answer lost
            patch.setattr(stripe_push, "invoice_stripe_pay", charged_then_killed)
        with pytest.raises(RuntimeError):
            stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    invoice = stripe_push.invoice_stripe_push(invoice_id=invoice.pk)
    customer = payments.stripe_customer_ensure(organization_id=org.pk)
    [remote] = stripe_client().v1.invoices.list(params={"customer": customer}).data
    assert (remote.id, remote.total, remote.status, remote.amount_paid) == (invoice.stripe_invoice_id, 15, "paid", 15)
    assert len(remote.lines.data) == 6
    assert invoice.status == "paid"
    assert Grant.objects.filter(source_ref=f"invoice:{invoice.number}").count() == 1
