"""Emails about billing events: an invoice issued (finalized) or paid, and the receipt of each successful top-up
(a payment failing is dunning's email). To the organization's billing emails, else its owners and billing admins.

Each event's email is a row under a unique key ("invoice_paid:<invoice id>"), created in the event's own
transaction, and sent after commit by a Celery task that claims it (a conditional UPDATE of sent_at) before
sending and un-claims it if sending fails: a replayed webhook or a retried task finds the row and sends nothing
again.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.invoicing.models import NANO_PER_MINOR, BillingEmail, BillingEmailKind, Invoice
from billing.invoicing.selectors import billing_recipients
from billing.payments.models import TopUp
from core.money import money_display

logger = logging.getLogger(__name__)


def billing_email_queue(*, organization_id: int, kind: BillingEmailKind, object_id: int) -> BillingEmail:
    """Record the event's email (once) and send it after the caller's transaction commits."""
    email, _ = BillingEmail.objects.get_or_create(
        key=f"{kind}:{object_id}", defaults={"organization_id": organization_id, "kind": kind}
    )
    if email.sent_at is None:
        transaction.on_commit(lambda: _send_later(email.pk), robust=True)
    return email


def billing_emails_queue(*, kind: BillingEmailKind, objects: dict[int, int]) -> None:
    """billing_email_queue for many objects at once ({object id: organization id}): one INSERT for the rows (the
    keys already there are kept as they are), and each unsent one sent after the caller's transaction commits."""
    if not objects:
        return
    keys = [f"{kind}:{object_id}" for object_id in objects]
    with connection.cursor() as cursor:
        # One INSERT ... SELECT FROM unnest(...): bulk_create prepared each field of each row in Python.
        cursor.execute(
            "INSERT INTO invoicing_billingemail (organization_id, kind, key, recipients) "
            "SELECT v.organization_id, %s, v.key, '{}' "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(organization_id, key) "
            "ON CONFLICT (key) DO NOTHING RETURNING id",
            [kind.value, list(objects.values()), keys],
        )
        unsent = [pk for (pk,) in cursor.fetchall()]
    if len(unsent) < len(keys):  # some were there already (a replay): those not sent yet are sent too
        unsent = list(BillingEmail.objects.filter(key__any=keys, sent_at__isnull=True).values_list("pk", flat=True))
    if unsent:
        # One task for them all: a message per email cost a close of 1,000 invoices seconds of broker round trips.
        transaction.on_commit(lambda: _send_many_later(unsent), robust=True)


def _send_later(email_id: int) -> None:
    from billing.invoicing.tasks import billing_email_send_task

    billing_email_send_task.delay(email_id)


def _send_many_later(email_ids: list[int]) -> None:
    from billing.invoicing.tasks import billing_emails_send_task

    billing_emails_send_task.delay(email_ids)


def _site(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def _invoice_context(invoice: Invoice) -> dict[str, Any]:
    due_at = None
    if invoice.collection_method == "send_invoice" and invoice.finalized_at and invoice.days_until_due:
        due_at = invoice.finalized_at + timedelta(days=invoice.days_until_due)
    return {
        "invoice": invoice,
        "organization_name": invoice.organization.name,
        "amount": money_display(invoice.total_minor * NANO_PER_MINOR, invoice.currency),
        "charged": invoice.collection_method == "charge_automatically",
        "due_at": due_at,
        # The invoice page's path, written out: the page is this product's, the link must not break with a rename.
        "invoice_url": _site(f"/billing/invoices/{invoice.pk}/"),
    }


def _context(email: BillingEmail) -> dict[str, Any]:
    object_id = int(email.key.rsplit(":", 1)[1])
    if email.kind == BillingEmailKind.TOP_UP_RECEIPT:
        top_up = TopUp.objects.select_related("organization").get(pk=object_id)
        return {
            "top_up": top_up,
            "organization_name": top_up.organization.name,
            "amount": money_display(top_up.amount_nano, top_up.currency),
            "receipt_url": _site(f"/billing/receipts/{top_up.pk}/"),
        }
    return _invoice_context(Invoice.objects.select_related("organization").get(pk=object_id))


def billing_email_send(*, email_id: int) -> bool:
    """Send one recorded email, once. True if this call sent it."""
    now = timezone.now()
    if not BillingEmail.objects.filter(pk=email_id, sent_at__isnull=True).update(sent_at=now):
        return False  # sent already, or being sent by another worker
    # Whatever fails after the claim (reading what the email is about, rendering it, the mail server) un-claims it:
    # a row left claimed would never be sent by anyone.
    try:
        email = BillingEmail.objects.get(pk=email_id)
        recipients = billing_recipients(organization_id=email.organization_id)
        if not recipients:
            return False  # nobody to tell: the row stays claimed with no recipients
        context = _context(email)
        subject = render_to_string(f"billing/email/{email.kind}_subject.txt", context)
        body = render_to_string(f"billing/email/{email.kind}_message.txt", context)
        send_mail(settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + " ".join(subject.split()), body, None, recipients)
    except Exception:
        logger.exception("billing email %s could not be sent; un-claimed for a retry", email_id)
        BillingEmail.objects.filter(pk=email_id, sent_at=now).update(sent_at=None)
        raise
    BillingEmail.objects.filter(pk=email_id).update(recipients=recipients)
    return True
