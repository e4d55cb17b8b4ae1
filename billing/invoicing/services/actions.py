"""Staff actions on an invoice besides corrections (credit notes and voids are in credit_notes): mark it
uncollectible, email it again, try collecting it now. Each takes a reason and is recorded in the audit log."""

import logging

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.invoicing.errors import InvoiceConflict
from billing.invoicing.models import NANO_PER_MINOR, CollectionMethod, Invoice, InvoiceStatus
from billing.invoicing.selectors import amount_due_minor, credit_notes_of
from billing.invoicing.services.credit_notes import (
    Actor,
    StripeUnavailable,
    invoice_action_record,
    invoice_locked,
    reason_clean,
)
from billing.notifications.selectors import notice_recipients
from billing.payments.stripe_client import stripe_client
from core.money import format_amount

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def invoice_mark_uncollectible(*, invoice_id: int, reason: str, actor: Actor) -> Invoice:
    """A finalized invoice nobody expects to be paid: marked at Stripe first (so it stops collecting), then here;
    retries stop. The debt stays in the ledger (a payment that still comes marks it paid). Idempotent."""
    reason = reason_clean(reason)
    invoice = invoice_locked(invoice_id)
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
        return invoice
    if invoice.status != InvoiceStatus.FINALIZED:
        raise InvoiceConflict(
            f"Invoice {invoice.number or invoice.pk} is {invoice.status}; only a finalized invoice can be marked "
            "uncollectible.",
            param="invoice",
        )
    if invoice.stripe_invoice_id:
        client = stripe_client()
        try:
            remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
            if remote.status == "paid":
                raise InvoiceConflict(f"Stripe's invoice {remote.id} was paid meanwhile.", param="invoice")
            if remote.status == "open":
                client.v1.invoices.mark_uncollectible(
                    invoice.stripe_invoice_id, options={"idempotency_key": f"invoice-{invoice.pk}-uncollectible"}
                )
        except stripe.StripeError as exc:
            raise StripeUnavailable(f"Stripe did not mark the invoice ({exc.user_message or exc}); try again.") from exc
        invoice.stripe_status = "uncollectible"
    invoice.status = InvoiceStatus.UNCOLLECTIBLE
    invoice.uncollectible_at = timezone.now()
    invoice.next_payment_attempt_at = None
    invoice.save(update_fields=["status", "stripe_status", "uncollectible_at", "next_payment_attempt_at"])
    invoice_action_record(invoice, "invoicing.mark_uncollectible", reason=reason, actor=actor)
    return invoice


def _money(minor: int, currency: str) -> str:
    return f"{format_amount(minor * NANO_PER_MINOR)} {currency}"


def invoice_url(invoice: Invoice) -> str:
    return invoice.hosted_invoice_url or f"{settings.SITE_URL.rstrip('/')}/billing/invoices/{invoice.pk}/"


@transaction.atomic(durable=True)
def invoice_resend(*, invoice_id: int, reason: str, actor: Actor) -> list[str]:
    """Email a finalized invoice (any status after finalization) again to the organization's owners and billing
    admins, with what is still due and its credit notes; returns the addresses. Sent after commit, with the
    audit event."""
    reason = reason_clean(reason)
    invoice = invoice_locked(invoice_id)
    if not invoice.number:
        raise InvoiceConflict(f"Invoice {invoice.pk} is not finalized yet; there is nothing to send.", param="invoice")
    recipients = notice_recipients(organization_id=invoice.organization_id)
    if not recipients:
        raise InvoiceConflict("The organization has no owner or billing admin with an email address.", param="invoice")
    currency = invoice.currency
    context = {
        "invoice": invoice,
        "organization_name": invoice.organization.name,
        "total": _money(invoice.total_minor, currency),
        "due": _money(amount_due_minor(invoice=invoice), currency),
        "credit_notes": [
            {"number": note.number, "amount": _money(note.total_minor, currency)}
            for note in credit_notes_of(invoice_id=invoice.pk)
        ],
        "invoice_url": invoice_url(invoice),
    }
    subject = " ".join(render_to_string("billing/email/invoice_resend_subject.txt", context).split())
    body = render_to_string("billing/email/invoice_resend_message.txt", context)
    invoice_action_record(invoice, "invoicing.resend", reason=reason, actor=actor, detail={"recipients": recipients})
    transaction.on_commit(
        lambda: send_mail(settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + subject, body, None, recipients), robust=True
    )
    return recipients


def invoice_collect_now(*, invoice_id: int, reason: str, actor: Actor) -> Invoice:
    """Try collecting a finalized invoice now: push it to Stripe if it is not there yet, else charge the saved card
    again (its own attempt number, so two staff clicking at once make one charge: Stripe's idempotency key)."""
    from billing.invoicing.services.collection import invoice_paid
    from billing.invoicing.services.stripe_push import invoice_stripe_pay, invoice_stripe_push

    reason = reason_clean(reason)
    with transaction.atomic(durable=True):
        invoice = invoice_locked(invoice_id)
        if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
            raise InvoiceConflict(
                f"Invoice {invoice.number or invoice.pk} is {invoice.status}; there is nothing to collect.",
                param="invoice",
            )
        if invoice.pushed_at is not None and invoice.collection_method == CollectionMethod.SEND_INVOICE:
            raise InvoiceConflict(
                "This invoice is sent with net terms: the customer pays it from Stripe's page; resend it instead.",
                param="invoice",
            )
        invoice_action_record(
            invoice,
            "invoicing.collect_now",
            reason=reason,
            actor=actor,
            detail={"attempt": invoice.payment_attempts + 1},
        )
    # Stripe calls outside the lock: each carries its idempotency key, and the payment is booked under the lock.
    try:
        if invoice.pushed_at is None:
            return invoice_stripe_push(invoice_id=invoice.pk)
        remote = invoice_stripe_pay(invoice=invoice, attempt=invoice.payment_attempts + 1)
    except stripe.StripeError as exc:
        raise StripeUnavailable(f"Stripe did not answer ({exc.user_message or exc}); try again.") from exc
    if remote is not None and remote.status == "paid":
        return invoice_paid(invoice_id=invoice.pk, amount_paid_minor=int(remote.amount_paid or 0))
    return Invoice.objects.get(pk=invoice.pk)
