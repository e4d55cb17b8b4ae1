"""Celery tasks of metering."""

from celery import shared_task

from billing.metering.budgets import services as budget_services


@shared_task(acks_late=True)
def budget_spend_sweep_task() -> int:
    """Free the budget reservations (key spend limits included) of requests whose ledger hold expired without a
    settle."""
    return budget_services.budget_spend_sweep()


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=8)
def budget_alert_email_task(alert_id: int) -> bool:
    """Email a budget's crossed threshold to the organization's owners and billing admins (once)."""
    return budget_services.budget_alert_email_send(alert_id=alert_id)


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=8)
def budget_alert_webhook_task(alert_id: int) -> None:
    """The outbound webhook events of a budget's crossed threshold (once each)."""
    budget_services.budget_alert_webhook_emit(alert_id=alert_id)
