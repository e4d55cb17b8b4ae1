"""Celery tasks of invoicing: beat finds the organizations with a period to close (or an invoice to push to
Stripe), and one task per organization closes its periods and pushes its finalized invoices (each step resumable,
so a task retried or run twice does no harm; a Stripe outage leaves the invoices finalized, pushed at a later
run)."""

import logging

import stripe
from celery import shared_task

from billing.invoicing import selectors, services
from billing.invoicing.services.credit_notes import credit_note_stripe_push
from billing.invoicing.services.details import billing_details_stripe_sync
from billing.invoicing.services.dunning import invoices_dunning
from billing.invoicing.services.emails import billing_email_send
from billing.invoicing.services.progressive import invoice_progressive_close, organizations_over_threshold
from billing.invoicing.services.rollup import rollups_run
from billing.invoicing.services.stripe_push import invoices_push_pending
from billing.payments.errors import PaymentsUnavailable

logger = logging.getLogger(__name__)

# Organizations closed together by one task (their invoices aggregated by one statement per step). Each statement
# and each transaction has a fixed cost whatever the batch, and summing a month of daily rollups is cheap per
# organization, so larger batches close faster (the benchmark's 1,000 organizations, on a loaded machine: 3.7 s in
# five batches of 200, 2.8 s in one of 1,000); a batch holds its invoices' row locks only for a step's transaction.
BATCH_SIZE = 1000


@shared_task(acks_late=True)
def invoices_close_due_task() -> int:
    # The days whose grace window is over are rolled up first (usually the period's last day, whose window ends
    # with the period's), so the closes queued next sum them instead of reading that day from the ledger.
    rollups_run()
    due = sorted(set(selectors.organizations_due()) | set(organizations_over_threshold()))
    for index in range(0, len(due), BATCH_SIZE):
        invoices_close_organizations_task.delay(due[index : index + BATCH_SIZE])
    return len(due)


@shared_task(acks_late=True)
def invoices_close_organizations_task(organization_ids: list[int]) -> list[int]:
    closed = [invoice.pk for invoice in services.invoices_close_due(organization_ids=organization_ids)]
    for organization_id in organization_ids:
        progressive = invoice_progressive_close(organization_id=organization_id)
        if progressive is not None:
            closed.append(progressive.pk)
        invoices_push_pending(organization_id=organization_id)
    return closed


@shared_task(acks_late=True)
def invoices_rollup_task() -> int:
    """The days whose grace window is over, summed for the closes (billing.invoicing.services.rollup)."""
    return rollups_run()


@shared_task(acks_late=True)
def invoices_dunning_task() -> dict[str, int]:
    return invoices_dunning()


@shared_task(acks_late=True, autoretry_for=(stripe.StripeError, PaymentsUnavailable), retry_backoff=30, max_retries=8)
def billing_details_stripe_sync_task(organization_id: int) -> bool:
    return billing_details_stripe_sync(organization_id=organization_id)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def billing_email_send_task(email_id: int) -> bool:
    return billing_email_send(email_id=email_id)


@shared_task(acks_late=True)
def billing_emails_send_task(email_ids: list[int]) -> int:
    """Send a close's emails, one after the other; those that cannot be sent now (left unclaimed) are handed to their
    own billing_email_send_task each, with that task's retries (sending is claimed per email, so none goes twice).
    They are handed over once the others are sent: a hand-over that fails (the broker unreachable, or a task run
    eagerly that fails again) must not keep the rest of the batch from being sent, as nothing sends them later."""
    sent = 0
    failed = []
    for email_id in email_ids:
        try:
            sent += billing_email_send(email_id=email_id)
        except Exception:
            logger.warning("billing email %s not sent with its batch; retried on its own", email_id, exc_info=True)
            failed.append(email_id)
    for email_id in failed:
        billing_email_send_task.delay(email_id)
    return sent


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=30, max_retries=8)
def credit_note_stripe_push_task(credit_note_id: int) -> None:
    """Lower Stripe's open invoice by a credit note (idempotent: keyed by the credit note)."""
    credit_note_stripe_push(credit_note_id=credit_note_id)
