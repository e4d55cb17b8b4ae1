"""Celery tasks of metering."""

from celery import shared_task

from billing.metering import spend


@shared_task(acks_late=True)
def key_spend_sweep_task() -> int:
    """Free the spend-limit reservations of requests whose ledger hold expired without a settle."""
    return spend.key_spend_sweep()
