"""The sweepers run from Celery beat: the schedule names real tasks, and each task does its sweep."""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from billing.ledger import services, tasks
from billing.ledger.models import Hold
from config.celery import app
from tests.billing.ledger.conftest import balances, fund, usd


def test_the_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry


@pytest.mark.django_db
def test_the_sweep_tasks_expire_holds_and_grants(org, wallet):
    fund(org, "5.00", kind="promotional", expires_at=timezone.now() + timedelta(hours=1))
    services.hold_place(wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="r", actor="t", ttl_seconds=60)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert tasks.holds_expire_task.apply().get() == 1
        assert tasks.grants_expire_task.apply().get() == usd("5.00")
    assert Hold.objects.get().status == "expired"
    assert balances(wallet) == (0, 0)
