"""Celery tasks of invoicing: beat finds the organizations with a period to close (or an invoice to push to
Stripe), and one task per organization closes its periods and pushes its finalized invoices (each step resumable,
so a task retried or run twice does no harm; a Stripe outage leaves the invoices finalized, pushed at a later
run)."""

from celery import shared_task

from billing.invoicing import selectors, services
from billing.invoicing.services.stripe_push import invoices_push_pending


@shared_task(acks_late=True)
def invoices_close_due_task() -> int:
    due = selectors.organizations_due()
    for organization_id in due:
        invoices_close_organization_task.delay(organization_id)
    return len(due)


@shared_task(acks_late=True)
def invoices_close_organization_task(organization_id: int) -> list[int]:
    closed = [invoice.pk for invoice in services.invoices_close_due(organization_id=organization_id)]
    invoices_push_pending(organization_id=organization_id)
    return closed
