"""Celery beat tasks of pricing: renewals, commitment billing, period closing. Each calls one service."""

from celery import shared_task

from billing.pricing import services


@shared_task(acks_late=True)
def subscriptions_renew_task() -> dict[str, int]:
    return services.subscriptions_renew()


@shared_task(acks_late=True)
def commitments_bill_task() -> dict[str, int]:
    return services.commitments_bill()


@shared_task(acks_late=True)
def periods_close_task() -> dict[str, int]:
    return services.periods_close()
