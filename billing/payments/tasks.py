"""Celery tasks: they take ids, call a service, and own their retries."""

import logging

from celery import shared_task

from billing.payments import services
from billing.payments.errors import PaymentsUnavailable

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def auto_topup_charge_task(organization_id: int) -> int | None:
    """Charge the saved card if the organization is (still) below its threshold.

    When Stripe gives no definite answer the charge stays in flight without a PaymentIntent; the resume sweeper
    sends it again with the same idempotency key once its lease ran out (so it is never sent twice at once).
    """
    try:
        top_up = services.auto_topup_charge(organization_id=organization_id)
    except PaymentsUnavailable:
        logger.warning("auto top-up of organization %s: Stripe not reached; the sweeper will resend", organization_id)
        return None
    return top_up.pk if top_up is not None else None


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def auto_topup_failure_notify_task(top_up_id: int) -> int:
    return services.auto_topup_failure_notify(top_up_id=top_up_id)


@shared_task(acks_late=True)
def stripe_events_retry_task() -> int:
    return len(services.stripe_events_retry())


@shared_task(acks_late=True)
def payments_resume_task() -> dict[str, int]:
    """Automatic charges and refunds that never got Stripe's answer are sent again with their idempotency keys."""
    return {"auto_top_ups": services.auto_topups_resume(), "refunds": services.refunds_resume()}


@shared_task(acks_late=True)
def topups_reconcile_task() -> dict[str, int]:
    """Top-ups charged but still in flight long after (their webhook was lost) are settled from Stripe's answer;
    attempts the customer never finished are marked abandoned (their PaymentIntent canceled)."""
    abandoned = services.topups_expire_unconfirmed()
    if abandoned:
        logger.info("%s top-ups whose card was never confirmed marked abandoned", abandoned)
    return services.topups_reconcile()
