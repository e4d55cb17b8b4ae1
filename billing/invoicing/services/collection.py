"""Collection state from Stripe: its invoice.* webhooks (through billing.payments' stored-event machinery, each
processed once in its own transaction) move an invoice to paid, uncollectible or void.

Events may arrive in any order and more than once: each handler locks the invoice, and a status only moves
forward (finalized -> paid | uncollectible | void, uncollectible -> paid | void), so a late or repeated event
changes nothing. A payment books the amount paid in the ledger as paid credit, which repays first the overdraft
the invoice billed (billing.ledger settles unfunded draws out of the next grant).
"""

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.invoicing.models import NANO_PER_MINOR, BillingEmailKind, Invoice, InvoiceLine, InvoiceStatus
from billing.invoicing.selectors import amount_due_minor
from billing.invoicing.services.credit_notes import VOIDABLE, invoice_void_record, void_reversible
from billing.invoicing.services.dunning import dunning_start, postpaid_restore
from billing.invoicing.services.emails import billing_email_queue
from billing.invoicing.services.events import invoice_event_emit
from billing.ledger import services as ledger
from billing.ledger.errors import InsufficientCredit
from billing.pricing.services.fees import fee_settle
from billing.webhooks.models import EventType

logger = logging.getLogger(__name__)


def _ours(stripe_invoice: dict[str, Any]) -> Invoice | None:
    """Our invoice of a Stripe invoice (by its id, or the invoice id we put in its metadata), locked."""
    stripe_id = str(stripe_invoice.get("id") or "")
    locked = Invoice.objects.select_for_update()
    invoice = locked.filter(stripe_invoice_id=stripe_id).first() if stripe_id else None
    metadata = stripe_invoice.get("metadata") or {}
    raw = metadata.get("invoice_id")
    if invoice is None and isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        candidate = locked.filter(pk=int(raw)).first()
        # The number too: another system using the same Stripe account may put its own invoice_id in metadata.
        if (
            candidate is not None
            and candidate.stripe_invoice_id in ("", stripe_id)
            and candidate.number == metadata.get("number")
        ):
            invoice = candidate
    if invoice is not None and not invoice.stripe_invoice_id and stripe_id:
        invoice.stripe_invoice_id = stripe_id
        invoice.save(update_fields=["stripe_invoice_id"])
    return invoice


@transaction.atomic
def invoice_paid(*, invoice_id: int, amount_paid_minor: int | None = None) -> Invoice:
    """Mark the invoice paid (once) and book the payment as paid credit in the ledger."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
        return invoice
    # Without Stripe's figure, what the invoice still asked for: its total less its credit notes (their credit is
    # already booked, so it must not be booked again as payment).
    due = amount_due_minor(invoice=invoice) if amount_paid_minor is None else amount_paid_minor
    amount_nano = due * NANO_PER_MINOR
    if amount_nano > 0:
        result = ledger.grant_create(
            organization_id=invoice.organization_id,
            kind="paid",
            amount_nano=amount_nano,
            idempotency_key=f"invoice-payment:{invoice.pk}",
            actor="stripe",
            reason=f"payment of invoice {invoice.number}",
            source_ref=f"invoice:{invoice.number}",
        )
        invoice.payment_grant_id = result.grant.pk
    _fees_settle(invoice)
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = timezone.now()
    invoice.stripe_status = "paid"
    invoice.payment_error = ""
    invoice.next_payment_attempt_at = None
    invoice.save(
        update_fields=[
            "status",
            "paid_at",
            "stripe_status",
            "payment_error",
            "payment_grant_id",
            "next_payment_attempt_at",
        ]
    )
    postpaid_restore(organization_id=invoice.organization_id)
    billing_email_queue(
        organization_id=invoice.organization_id, kind=BillingEmailKind.INVOICE_PAID, object_id=invoice.pk
    )
    return invoice


def _fees_settle(invoice: Invoice) -> None:
    """The fees credit could not pay, listed on the invoice, are paid out of its payment (just granted), each with
    the debit credit would have made. One the credit cannot cover (a partial payment) stays unpaid, and the
    reconcile names it (a paid invoice whose fee has no debit) for an operator."""
    refs = InvoiceLine.objects.filter(invoice=invoice).exclude(fee_ref="").order_by("position")
    for fee_ref in refs.values_list("fee_ref", flat=True):
        try:
            with transaction.atomic():
                fee_settle(fee_ref=fee_ref, now=timezone.now(), actor="stripe")
        except InsufficientCredit:
            logger.warning("invoice %s: fee %s not paid, the payment did not cover it", invoice.number, fee_ref)


def _paid(stripe_invoice: dict[str, Any]) -> str | None:
    invoice = _ours(stripe_invoice)
    if invoice is None:
        return "not an invoice of this product"
    if invoice.status == InvoiceStatus.PAID:
        return "already paid"
    if invoice.status == InvoiceStatus.VOID:
        return "the invoice is void"
    paid = stripe_invoice.get("amount_paid")
    invoice_paid(invoice_id=invoice.pk, amount_paid_minor=paid if isinstance(paid, int) and paid >= 0 else None)
    return None


def _finalized(stripe_invoice: dict[str, Any]) -> str | None:
    invoice = _ours(stripe_invoice)
    if invoice is None:
        return "not an invoice of this product"
    if invoice.stripe_status in ("", "draft"):
        invoice.stripe_status = "open"
        invoice.save(update_fields=["stripe_status"])
    return None


def _payment_failed(stripe_invoice: dict[str, Any]) -> str | None:
    invoice = _ours(stripe_invoice)
    if invoice is None:
        return "not an invoice of this product"
    if invoice.status != InvoiceStatus.FINALIZED:
        return f"the invoice is {invoice.status}"
    attempts = stripe_invoice.get("attempt_count")
    invoice.payment_attempts = max(invoice.payment_attempts, attempts if isinstance(attempts, int) else 1)
    error = (
        (stripe_invoice.get("last_finalization_error") or {}).get("message")
        if isinstance(stripe_invoice.get("last_finalization_error"), dict)
        else None
    )
    invoice.payment_error = (error or invoice.payment_error or "The payment failed.")[:1000]
    invoice.save(update_fields=["payment_attempts", "payment_error"])
    invoice_event_emit(
        invoice=invoice,
        event_type=EventType.INVOICE_PAYMENT_FAILED,
        idempotency_key=f"invoice.payment_failed:{invoice.pk}:{invoice.payment_attempts}",
    )
    dunning_start(invoice_id=invoice.pk)
    return None


def _moved(to: str, stamp: str, allowed_from: tuple[str, ...]) -> Any:
    def handle(stripe_invoice: dict[str, Any]) -> str | None:
        invoice = _ours(stripe_invoice)
        if invoice is None:
            return "not an invoice of this product"
        if invoice.status == to:
            return f"already {to}"
        if invoice.status not in allowed_from:
            return f"the invoice is {invoice.status}"
        invoice.status = to
        invoice.stripe_status = to
        setattr(invoice, stamp, timezone.now())
        invoice.next_payment_attempt_at = None
        invoice.save(update_fields=["status", "stripe_status", stamp, "next_payment_attempt_at"])
        return None

    return handle


def _voided(stripe_invoice: dict[str, Any]) -> str | None:
    """Voided at Stripe (its dashboard, or our own void whose write is done or waits on the invoice's lock): void
    here too, with the credit note of what was left on it, as a staff void does."""
    invoice = _ours(stripe_invoice)
    if invoice is None:
        return "not an invoice of this product"
    if invoice.status == InvoiceStatus.VOID:
        return "already void"
    if invoice.status not in VOIDABLE:
        return f"the invoice is {invoice.status}"
    if not void_reversible(invoice):
        # Earlier credit notes gave back more than it left due: void, with nothing more to give back.
        invoice.status, invoice.stripe_status, invoice.voided_at = InvoiceStatus.VOID, "void", timezone.now()
        invoice.next_payment_attempt_at = None
        invoice.save(update_fields=["status", "stripe_status", "voided_at", "next_payment_attempt_at"])
        postpaid_restore(organization_id=invoice.organization_id)
        return None
    invoice_void_record(invoice=invoice, reason="Voided at Stripe.", actor="stripe")
    return None


HANDLERS = {
    "invoice.finalized": _finalized,
    "invoice.paid": _paid,
    # Sent with invoice.paid (older integrations listen to this one); either marks the invoice paid, once.
    "invoice.payment_succeeded": _paid,
    "invoice.payment_failed": _payment_failed,
    "invoice.marked_uncollectible": _moved(InvoiceStatus.UNCOLLECTIBLE, "uncollectible_at", (InvoiceStatus.FINALIZED,)),
    "invoice.voided": _voided,
}
