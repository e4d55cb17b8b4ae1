"""Pushing a finalized invoice to Stripe, which collects what it asks for.

With Stripe's documented API: one invoice item per line that is not zero in cents (negative for credit applied),
plus one item that brings the cents to the invoice's rounded total, then an invoice of the customer's pending
items (`pending_invoice_items_behavior=include`, `auto_advance=false`: the product drives it), finalized, then
paid with the saved card (`charge_automatically`) or sent with net terms (`send_invoice`). Every call carries an
idempotency key derived from the invoice's and the line's ids, so a push retried after a crash at any point
makes no second item and no second Stripe invoice (Stripe keeps keys for 24 hours: a push that failed longer ago
is resumed from the Stripe invoice id stored at once after its creation).

Stripe's total must equal the product's to the cent; if it does not, the push stops before finalizing.
"""

import logging

import stripe
from django.utils import timezone

from billing.invoicing.errors import InvoiceConflict
from billing.invoicing.models import (
    NANO_PER_MINOR,
    RECORD_KINDS,
    CollectionMethod,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from billing.invoicing.selectors import credit_notes_of
from billing.invoicing.services.credit_notes import credit_note_stripe_push
from billing.payments.models import AutoTopUp
from billing.payments.services.customers import with_stripe_customer
from billing.payments.stripe_client import stripe_client
from core.errors import ApplicationError
from core.money import format_amount

logger = logging.getLogger(__name__)


def cents(amount_nano: int) -> int:
    """Nano-units to minor units, half up (the invoice total's rule)."""
    return (amount_nano + NANO_PER_MINOR // 2) // NANO_PER_MINOR


def stripe_items(invoice: Invoice) -> list[tuple[str, int, str]]:
    """(key, amount in minor units, description) of the Stripe invoice items: the lines, rounded, and the rounding
    that makes them add up to the invoice's total."""
    items = []
    for line in InvoiceLine.objects.filter(invoice=invoice).exclude(kind__in=RECORD_KINDS).order_by("position"):
        amount = cents(line.amount_nano)
        if amount:
            items.append((f"line-{line.pk}", amount, line.description[:500]))
    rounding = invoice.total_minor - sum(amount for _, amount, _ in items)
    if rounding:
        items.append(
            (
                "rounding",
                rounding,
                f"Rounding of the lines to the invoice total (exact total {format_amount(invoice.total_exact_nano)}, "
                f"{format_amount(invoice.carry_out_nano)} carried to the next invoice)",
            )
        )
    return items


def saved_card(*, organization_id: int) -> str | None:
    """The organization's saved card (Billing -> Payment methods; also its Stripe customer's invoice default). None
    once it was removed: a removed card is detached at Stripe and never charged again."""
    return (
        AutoTopUp.objects.filter(organization_id=organization_id)
        .exclude(stripe_payment_method_id="")
        .values_list("stripe_payment_method_id", flat=True)
        .first()
    )


def _create(invoice: Invoice, customer_id: str) -> str:
    client = stripe_client()
    currency = invoice.currency.lower()
    for key, amount, description in stripe_items(invoice):
        client.v1.invoice_items.create(
            params={
                "customer": customer_id,
                "amount": amount,
                "currency": currency,
                "description": description,
                "metadata": {"invoice_id": str(invoice.pk), "item": key},
            },
            options={"idempotency_key": f"invoice-{invoice.pk}-item-{key}"},
        )
    params: dict[str, object] = {
        "customer": customer_id,
        "collection_method": invoice.collection_method,
        "auto_advance": False,
        "pending_invoice_items_behavior": "include",
        "description": f"{invoice.number}: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}",
        "metadata": {"invoice_id": str(invoice.pk), "number": invoice.number},
    }
    if invoice.collection_method == CollectionMethod.SEND_INVOICE:
        params["days_until_due"] = invoice.days_until_due
    else:
        card = saved_card(organization_id=invoice.organization_id)
        if card:
            params["default_payment_method"] = card
    created = client.v1.invoices.create(
        params=params,  # type: ignore[arg-type]
        options={"idempotency_key": f"invoice-{invoice.pk}-create"},
    )
    return str(created.id)


def invoice_stripe_push(*, invoice_id: int) -> Invoice:
    """Push a finalized invoice to Stripe and start its collection (idempotent; resumes a push that stopped).
    Stripe errors propagate (the beat task retries); a declined card is not an error (Stripe reports it)."""
    invoice = Invoice.objects.get(pk=invoice_id)
    if invoice.status != InvoiceStatus.FINALIZED or invoice.pushed_at is not None:
        return invoice
    if not invoice.stripe_invoice_id:
        stripe_id = with_stripe_customer(
            organization_id=invoice.organization_id, call=lambda customer_id: _create(invoice, customer_id)
        )
        Invoice.objects.filter(pk=invoice.pk, stripe_invoice_id="").update(stripe_invoice_id=stripe_id)
        invoice.refresh_from_db()
    client = stripe_client()
    remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
    if remote.total != invoice.total_minor:
        raise InvoiceConflict(
            f"Stripe's invoice {remote.id} totals {remote.total} minor units, the invoice {invoice.total_minor}; "
            "it was not finalized at Stripe.",
            param="invoice",
        )
    if remote.status == "draft":
        remote = client.v1.invoices.finalize_invoice(
            invoice.stripe_invoice_id,
            params={"auto_advance": False},
            options={"idempotency_key": f"invoice-{invoice.pk}-finalize"},
        )
    if remote.status == "open":
        # Credit notes issued before the push lower Stripe's invoice before it is sent or charged.
        notes = credit_notes_of(invoice_id=invoice.pk).filter(stripe_credit_note_id="", total_minor__lt=0)
        for note_id in notes.values_list("id", flat=True):
            credit_note_stripe_push(credit_note_id=note_id)
        if invoice.credit_notes.exists():
            remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
    if remote.status == "open":
        if invoice.collection_method == CollectionMethod.SEND_INVOICE:
            remote = client.v1.invoices.send_invoice(
                invoice.stripe_invoice_id, options={"idempotency_key": f"invoice-{invoice.pk}-send"}
            )
        else:
            remote = invoice_stripe_pay(invoice=invoice, attempt=1) or remote
    Invoice.objects.filter(pk=invoice.pk).update(
        pushed_at=timezone.now(),
        push_error="",
        stripe_status=remote.status,
        hosted_invoice_url=str(getattr(remote, "hosted_invoice_url", None) or "")[:1000],
    )
    invoice.refresh_from_db()
    if remote.status == "paid":
        from billing.invoicing.services.collection import invoice_paid

        invoice = invoice_paid(invoice_id=invoice.pk, amount_paid_minor=int(remote.amount_paid or 0))
    return invoice


def invoice_stripe_pay(*, invoice: Invoice, attempt: int) -> stripe.Invoice | None:
    """Ask Stripe to charge the saved card for an open invoice (attempt n has its own idempotency key). A decline
    is recorded on the invoice and returns None: Stripe's invoice.payment_failed event starts dunning."""
    Invoice.objects.filter(pk=invoice.pk, payment_attempts__lt=attempt).update(payment_attempts=attempt)
    card = saved_card(organization_id=invoice.organization_id)
    try:
        paid = stripe_client().v1.invoices.pay(
            invoice.stripe_invoice_id,
            params={"payment_method": card} if card else {},
            options={"idempotency_key": f"invoice-{invoice.pk}-pay-{attempt}"},
        )
    except stripe.CardError as exc:
        _payment_failed(invoice, str(exc.user_message or exc))
        return None
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404 or "payment method" in str(exc).lower():  # no saved card
            _payment_failed(invoice, "No saved card to charge.")
            return None
        raise
    if paid.status != "paid":  # the charge did not go through (Stripe answers some declines this way)
        _payment_failed(invoice, "The saved card was not charged.")
    return paid


def _payment_failed(invoice: Invoice, error: str) -> None:
    from billing.invoicing.services.dunning import dunning_start

    Invoice.objects.filter(pk=invoice.pk).update(payment_error=error[:1000])
    dunning_start(invoice_id=invoice.pk)


def invoices_push_pending(*, organization_id: int | None = None, limit: int = 1000) -> list[Invoice]:
    """Push every finalized invoice not yet at Stripe (oldest first); a Stripe failure is kept on the invoice and
    retried at the next run, without stopping the others."""
    pending = Invoice.objects.filter(pushed_at__isnull=True, status=InvoiceStatus.FINALIZED)
    if organization_id is not None:
        pending = pending.filter(organization_id=organization_id)
    pushed = []
    for invoice_id in pending.order_by("finalized_at", "id").values_list("id", flat=True)[:limit]:
        try:
            pushed.append(invoice_stripe_push(invoice_id=invoice_id))
        except (stripe.StripeError, ApplicationError) as exc:
            logger.warning("invoice %s not pushed to Stripe: %s", invoice_id, exc)
            Invoice.objects.filter(pk=invoice_id).update(push_error=str(exc)[:1000])
    return pushed
