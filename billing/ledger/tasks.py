"""Celery beat tasks: the sweepers that keep holds and grants honest when nobody settles them."""

from celery import shared_task

from billing.ledger import services


@shared_task(acks_late=True)
def holds_expire_task() -> int:
    return services.holds_expire()


@shared_task(acks_late=True)
def grants_expire_task() -> int:
    return services.grants_expire()
