"""Celery tasks of invoicing: beat finds the organizations with a period to close, and one task per organization
closes its periods (each close resumable, so a task retried or run twice does no harm)."""

from celery import shared_task

from billing.invoicing import selectors, services


@shared_task(acks_late=True)
def invoices_close_due_task() -> int:
    due = selectors.organizations_due()
    for organization_id in due:
        invoices_close_organization_task.delay(organization_id)
    return len(due)


@shared_task(acks_late=True)
def invoices_close_organization_task(organization_id: int) -> list[int]:
    return [invoice.pk for invoice in services.invoices_close_due(organization_id=organization_id)]
