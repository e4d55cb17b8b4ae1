"""Emails of billing events, through the real enqueue path (after commit -> Celery, run eagerly): an invoice issued
and paid, its payment failing (dunning's email), and a receipt per top-up; each to the billing emails (else the
owners and billing admins), with its link, and once per event however often the webhook is replayed; an email the
mail server refuses is left unsent for its retry, and the rest of its batch is sent."""

import json
import smtplib
from collections.abc import Iterator

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends import locmem

from accounts.models import Role
from billing.invoicing import services, tasks
from billing.invoicing.models import BillingEmail, Invoice
from billing.invoicing.services.details import billing_details_set
from billing.invoicing.services.emails import billing_email_send
from billing.payments import services as payments
from billing.payments.models import TopUp
from tests.accounts.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.billing.invoicing.conftest import at, usd
from tests.billing.invoicing.test_close import OCT, october
from tests.billing.invoicing.test_stripe import _event, deliver
from tests.billing.payments.fixtures import eager_celery  # noqa: F401
from tests.billing.payments.helpers import stripe_signature

# localstripe: saving billing details sends them to the Stripe customer (a task, run eagerly here too).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery", "localstripe")]
SITE = "http://localhost:8000"


@pytest.fixture
def owner(org):
    user = UserFactory(username="olga@acme.example")
    MembershipFactory(user=user, organization=org, role=Role.OWNER)
    return user


def billing_emails(org, *emails: str) -> None:
    billing_details_set(
        organization_id=org.pk,
        actor="test",
        legal_name="Acme GmbH",
        address_line1="Hauptstraße 1",
        address_line2="",
        city="Berlin",
        postal_code="10115",
        region="",
        country="DE",
        tax_id_type="",
        tax_id_value="",
        emails=list(emails),
    )


def closed(org) -> Invoice:
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        return services.invoice_close(organization_id=org.pk, period_start=OCT)


def test_an_issued_invoice_is_emailed_once_to_the_billing_emails(org, owner, settings):
    settings.SITE_URL = SITE
    billing_emails(org, "ap@acme.example", "cfo@acme.example")
    invoice = closed(org)
    [message] = mail.outbox
    assert message.to == ["ap@acme.example", "cfo@acme.example"]
    assert invoice.number in message.subject and "$0.15" in message.subject
    assert f"{SITE}/billing/invoices/{invoice.pk}/" in message.body
    # Closing again, or the task running again, sends nothing more.
    services.invoice_close(organization_id=org.pk, period_start=OCT)
    email = BillingEmail.objects.get(key=f"invoice_issued:{invoice.pk}")
    assert billing_email_send(email_id=email.pk) is False
    assert len(mail.outbox) == 1
    assert email.recipients == ["ap@acme.example", "cfo@acme.example"]


def test_without_billing_emails_the_owners_and_billing_admins_are_told(org, owner):
    MembershipFactory(user=UserFactory(username="dev@acme.example"), organization=org, role=Role.DEVELOPER)
    closed(org)
    [message] = mail.outbox
    assert message.to == ["olga@acme.example"]


def test_a_paid_invoice_is_emailed_once_however_often_stripe_says_so(org, owner, settings):
    settings.SITE_URL = SITE
    billing_emails(org, "ap@acme.example")
    invoice = closed(org)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=f"in_test{invoice.pk}")
    invoice.refresh_from_db()
    mail.outbox.clear()
    paid = _event(invoice, "invoice.paid", 1, amount_paid=15, status="paid")
    assert deliver(paid) == "processed"
    deliver(paid)  # the same event again
    deliver(_event(invoice, "invoice.payment_succeeded", 2, amount_paid=15, status="paid"))  # its twin event
    [message] = mail.outbox
    assert message.subject.endswith(f"Invoice {invoice.number} is paid")
    assert message.to == ["ap@acme.example"]
    assert f"{SITE}/billing/invoices/{invoice.pk}/" in message.body


def test_a_failed_payment_is_emailed_to_the_billing_emails(org, owner):
    billing_emails(org, "ap@acme.example")
    invoice = closed(org)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=f"in_test{invoice.pk}")
    invoice.refresh_from_db()
    mail.outbox.clear()
    failed = _event(invoice, "invoice.payment_failed", 1, attempt_count=1, status="open")
    deliver(failed)
    deliver(_event(invoice, "invoice.payment_failed", 2, attempt_count=1, status="open"))
    [message] = mail.outbox
    assert message.to == ["ap@acme.example"]
    assert f"Payment of invoice {invoice.number} failed" in message.subject


def _succeeded(top_up: TopUp, event_id: str) -> dict:
    intent = {
        "id": f"pi_receipt{top_up.pk}",
        "object": "payment_intent",
        "amount": top_up.amount_cents,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"top_up_id": str(top_up.pk), "organization_id": str(top_up.organization_id)},
    }
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": intent}}


def test_each_top_up_gets_one_receipt_email(org, owner, settings):
    settings.SITE_URL = SITE
    top_up = TopUp.objects.create(
        organization=org, kind=TopUp.Kind.MANUAL, status=TopUp.Status.PROCESSING, amount_nano=usd("20.00")
    )
    for event_id in ("evt_receipt_1", "evt_receipt_1", "evt_receipt_2"):
        payload = json.dumps(_succeeded(top_up, event_id))
        stored = payments.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
        payments.stripe_event_process(stripe_event_id=stored.pk)
    top_up.refresh_from_db()
    assert top_up.status == TopUp.Status.SUCCEEDED
    [message] = mail.outbox
    assert message.to == ["olga@acme.example"]
    assert top_up.receipt_number in message.subject and "$20.00" in message.subject
    assert f"{SITE}/billing/receipts/{top_up.pk}/" in message.body


# The addresses the mail server refuses (RefusingBackend), and every address a message was tried to.
REFUSED: set[str] = set()
TRIED: list[str] = []


class RefusingBackend(locmem.EmailBackend):
    """The test outbox behind a mail server that refuses the addresses in REFUSED, as an SMTP server does: a fault
    no real component of these tests can be made to give."""

    def send_messages(self, messages):
        for message in messages:
            TRIED.extend(message.recipients())
            refused = set(message.recipients()) & REFUSED
            if refused:
                raise smtplib.SMTPRecipientsRefused(
                    {address: (550, b"5.1.1 mailbox unavailable") for address in refused}
                )
        return super().send_messages(messages)


@pytest.fixture
def refusing_mail(settings) -> Iterator[set[str]]:
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    yield REFUSED
    REFUSED.clear()
    TRIED.clear()


def test_an_email_its_batch_cannot_send_is_left_for_its_retry_and_the_rest_of_the_batch_is_sent_once(
    org, refusing_mail
):
    others = [OrganizationFactory(name="Bolt"), OrganizationFactory(name="Cobalt")]
    address = {org.pk: "ap@acme.example", others[0].pk: "ap@bolt.example", others[1].pk: "ap@cobalt.example"}
    for each in (org, *others):
        billing_emails(each, address[each.pk])
        october(each)
    # The middle organization's email is refused, so that one of the batch comes after it (in either order).
    refusing_mail.add("ap@bolt.example")
    with time_machine.travel(at("2026-11-01 01:00:01")):
        assert len(services.invoices_close_due(organization_ids=list(address))) == 3
    emails = {email.organization_id: email for email in BillingEmail.objects.all()}
    assert len(emails) == 3
    # The others are sent, once each; the refused one is left unclaimed (not sent), after its own task tried it too
    # (its next retry comes later: run eagerly here, its retry is only scheduled).
    assert sorted(message.to for message in mail.outbox) == [["ap@acme.example"], ["ap@cobalt.example"]]
    refused = emails[others[0].pk]
    assert (refused.sent_at, refused.recipients) == (None, [])
    assert all(emails[pk].sent_at and emails[pk].recipients == [address[pk]] for pk in (org.pk, others[1].pk))
    assert TRIED.count("ap@bolt.example") == 2
    # The mail server takes it now: the retry sends it, and only it (the whole batch again would send nothing).
    refusing_mail.clear()
    assert tasks.billing_email_send_task.delay(refused.pk).get() is True
    assert tasks.billing_emails_send_task.delay([email.pk for email in emails.values()]).get() == 0
    assert sorted(message.to for message in mail.outbox) == [
        ["ap@acme.example"],
        ["ap@bolt.example"],
        ["ap@cobalt.example"],
    ]
    refused.refresh_from_db()
    assert refused.sent_at and refused.recipients == ["ap@bolt.example"]


def test_an_email_that_cannot_be_written_is_left_unclaimed_for_its_retry(org, owner):
    # A receipt whose top-up cannot be read: what fails before the mail server is reached un-claims it too.
    email = BillingEmail.objects.create(organization=org, kind="top_up_receipt", key="top_up_receipt:999999999")
    with pytest.raises(TopUp.DoesNotExist):
        billing_email_send(email_id=email.pk)
    email.refresh_from_db()
    assert (email.sent_at, email.recipients, mail.outbox) == (None, [], [])
