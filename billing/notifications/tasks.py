"""Celery beat: check the organizations where a notice may be due, and send what is due once a day."""

import logging

from celery import shared_task
from django.utils import timezone

from billing.notifications import selectors, services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def notifications_check_task() -> int:
    """Returns the number of notices created. One organization failing does not stop the others."""
    now = timezone.now()
    created = 0
    for organization_id in selectors.organizations_to_check(now=now):
        try:
            created += len(services.notices_send(organization_id=organization_id, now=now))
        except Exception:
            logger.exception("notices for organization %s could not be checked", organization_id)
    return created
