"""Dunning: a failed payment is retried on a schedule, with an email at each step; past a grace period the
organization's postpaid use is suspended until the invoice is paid, when everything is restored at once.

Schedule (settings): retries INVOICE_DUNNING_RETRY_DAYS after the first failure (3, 5 and 7 days by default);
suspension INVOICE_SUSPEND_AFTER_DAYS after it. Every step is claimed by a conditional UPDATE before it acts, so
two beat runs (or a webhook and a run) never retry or email the same step twice.

Suspension withdraws the overdraft: the wallet's limit is lowered to what it already owes (never lower: the
ledger refuses a limit below the debt), so prepaid credit still pays for calls but the debt cannot grow, and a
refused call names the unpaid invoice (`suspension_of`).
"""

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.services.audit import audit_record
from billing.invoicing.models import NANO_PER_MINOR, CollectionMethod, Invoice, InvoiceStatus, Suspension
from billing.invoicing.selectors import billing_recipients
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from core.money import format_amount

logger = logging.getLogger(__name__)


def _retry_at(failed_at: datetime, step: int) -> datetime | None:
    """When retry number `step` (0-based) is due, or None after the last one."""
    days = settings.INVOICE_DUNNING_RETRY_DAYS
    return failed_at + timedelta(days=days[step]) if step < len(days) else None


def dunning_start(*, invoice_id: int, now: datetime | None = None) -> bool:
    """The first failed payment of an invoice: schedule the retries and email the owners (once)."""
    now = now or timezone.now()
    started = Invoice.objects.filter(
        pk=invoice_id,
        status=InvoiceStatus.FINALIZED,
        collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
        payment_failed_at__isnull=True,
    ).update(payment_failed_at=now, dunning_step=0, next_payment_attempt_at=_retry_at(now, 0))
    if started:
        transaction.on_commit(partial(dunning_email_send, invoice_id=invoice_id, step=0), robust=True)
    return bool(started)


def invoice_payment_retry(*, invoice_id: int, now: datetime | None = None) -> Invoice:
    """The next scheduled retry of a failed payment: claimed, then the saved card is charged again."""
    from billing.invoicing.services.stripe_push import invoice_stripe_pay

    now = now or timezone.now()
    invoice = Invoice.objects.get(pk=invoice_id)
    due = invoice.next_payment_attempt_at
    if invoice.status != InvoiceStatus.FINALIZED or due is None or due > now or invoice.payment_failed_at is None:
        return invoice
    step = invoice.dunning_step + 1
    claimed = Invoice.objects.filter(pk=invoice.pk, dunning_step=invoice.dunning_step, next_payment_attempt_at=due)
    if not claimed.update(dunning_step=step, next_payment_attempt_at=_retry_at(invoice.payment_failed_at, step)):
        return Invoice.objects.get(pk=invoice_id)  # another run took this step
    remote = invoice_stripe_pay(invoice=invoice, attempt=step + 1)
    if remote is not None and remote.status == "paid":
        from billing.invoicing.services.collection import invoice_paid

        return invoice_paid(invoice_id=invoice.pk, amount_paid_minor=int(remote.amount_paid or 0))
    dunning_email_send(invoice_id=invoice.pk, step=step)
    return Invoice.objects.get(pk=invoice_id)


@transaction.atomic
def postpaid_suspend(*, invoice_id: int) -> Suspension | None:
    """Withdraw the organization's overdraft for an invoice still unpaid past the grace period."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status != InvoiceStatus.FINALIZED:
        return None
    existing = Suspension.objects.filter(organization_id=invoice.organization_id, lifted_at__isnull=True).first()
    if existing is not None:
        return existing
    wallet = Wallet.objects.select_for_update().get(pk=invoice.wallet_id)
    limit = min(wallet.overdraft_limit_nano, max(0, -wallet.available_nano))
    suspension = Suspension.objects.create(
        organization_id=invoice.organization_id,
        invoice=invoice,
        overdraft_limit_before_nano=wallet.overdraft_limit_nano,
    )
    ledger.wallet_overdraft_set(
        organization_id=invoice.organization_id,
        overdraft_limit_nano=limit,
        actor="system:dunning",
        reason=f"postpaid use suspended: invoice {invoice.number} unpaid",
    )
    audit_record(
        actor="system:dunning",
        action="invoicing.postpaid_suspend",
        organization_id=invoice.organization_id,
        target=f"Invoice:{invoice.pk}",
        detail={"invoice": invoice.number, "overdraft_limit_before": format_amount(wallet.overdraft_limit_nano)},
    )
    return suspension


def postpaid_restore(*, organization_id: int) -> Suspension | None:
    """Lift the organization's suspension for an unpaid invoice once no invoice past the grace period is unpaid
    (inside the caller's transaction: the payment's). A suspension staff made by hand stays: staff lift it."""
    suspension = (
        Suspension.objects.select_for_update()
        .select_related("invoice")
        .filter(organization_id=organization_id, lifted_at__isnull=True, invoice__isnull=False)
        .first()
    )
    if suspension is None or suspension.invoice is None or overdue_invoices(organization_id=organization_id).exists():
        return None
    wallet = Wallet.objects.select_for_update().get(pk=suspension.invoice.wallet_id)
    ledger.wallet_overdraft_set(
        organization_id=organization_id,
        overdraft_limit_nano=max(suspension.overdraft_limit_before_nano, wallet.overdraft_limit_nano),
        actor="system:dunning",
        reason=f"postpaid use restored: invoice {suspension.invoice.number} paid",
    )
    suspension.lifted_at = timezone.now()
    suspension.save(update_fields=["lifted_at"])
    return suspension


def overdue_invoices(*, organization_id: int | None = None, now: datetime | None = None) -> QuerySet[Invoice]:
    """Finalized invoices past the grace period: charged ones whose payment first failed longer ago, and sent ones
    (net terms) whose due date passed longer ago."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.INVOICE_SUSPEND_AFTER_DAYS)
    finalized = Invoice.objects.filter(status=InvoiceStatus.FINALIZED)
    if organization_id is not None:
        finalized = finalized.filter(organization_id=organization_id)
    sent = finalized.filter(collection_method=CollectionMethod.SEND_INVOICE, total_minor__gt=0)
    past_due = [
        invoice.pk
        for invoice in sent.only("id", "finalized_at", "days_until_due")
        if invoice.finalized_at is not None
        and invoice.finalized_at + timedelta(days=invoice.days_until_due or 0) <= cutoff
    ]
    return finalized.filter(Q(payment_failed_at__lte=cutoff) | Q(pk__in=past_due))


def invoices_dunning(*, now: datetime | None = None) -> dict[str, int]:
    """The beat's dunning run: the retries due, then the suspensions due."""
    now = now or timezone.now()
    retried = suspended = 0
    due = Invoice.objects.filter(status=InvoiceStatus.FINALIZED, next_payment_attempt_at__lte=now)
    for invoice_id in due.order_by("next_payment_attempt_at").values_list("id", flat=True)[:1000]:
        try:
            invoice_payment_retry(invoice_id=invoice_id, now=now)
            retried += 1
        except Exception:  # one invoice's Stripe error must not stop the others; the step is retried next run
            logger.exception("invoice %s: the payment retry failed", invoice_id)
    suspended_orgs = Suspension.objects.filter(lifted_at__isnull=True).values("organization_id")
    for invoice_id in (
        overdue_invoices(now=now).exclude(organization_id__in=suspended_orgs).values_list("id", flat=True)[:1000]
    ):
        if postpaid_suspend(invoice_id=invoice_id) is not None:
            suspended += 1
    return {"retried": retried, "suspended": suspended}


def dunning_email_send(*, invoice_id: int, step: int) -> bool:
    """Email the billing emails (else the owners and billing admins) that the invoice's payment failed (step 0)
    or failed again (retry `step`), with the invoice's link; once per step."""
    if not Invoice.objects.filter(pk=invoice_id, dunning_emailed_step__lt=step).update(dunning_emailed_step=step):
        return False
    invoice = Invoice.objects.select_related("organization").get(pk=invoice_id)
    recipients = billing_recipients(organization_id=invoice.organization_id)
    if not recipients:
        return False
    retries = len(settings.INVOICE_DUNNING_RETRY_DAYS)
    context = {
        "invoice": invoice,
        "organization_name": invoice.organization.name,
        "amount": f"{format_amount(invoice.total_minor * NANO_PER_MINOR)} {invoice.currency}",
        "step": step,
        "retries_left": max(0, retries - step),
        "next_attempt_at": invoice.next_payment_attempt_at,
        "suspend_at": (invoice.payment_failed_at or timezone.now())
        + timedelta(days=settings.INVOICE_SUSPEND_AFTER_DAYS),
        "invoice_url": invoice.hosted_invoice_url or f"{settings.SITE_URL.rstrip('/')}/billing/invoices/{invoice.pk}/",
        "card_url": f"{settings.SITE_URL.rstrip('/')}/billing/auto-top-up/",
    }
    subject = render_to_string("billing/email/invoice_payment_failed_subject.txt", context)
    body = render_to_string("billing/email/invoice_payment_failed_message.txt", context)
    try:
        send_mail(settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + " ".join(subject.split()), body, None, recipients)
    except Exception:
        logger.exception("invoice %s: the dunning email of step %s could not be sent", invoice_id, step)
        Invoice.objects.filter(pk=invoice_id, dunning_emailed_step=step).update(dunning_emailed_step=step - 1)
        return False
    return True
