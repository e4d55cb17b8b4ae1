"""Where events are emitted: top-ups (manual and automatic), low balance, keys about to expire."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.services import apikey_create, apikey_update
from billing.ledger import services as ledger
from billing.notifications.services import notices_send
from billing.payments.models import TopUp
from billing.payments.services.auto_topup import auto_topup_failed
from billing.payments.services.topups import topup_fail, topup_paid
from billing.webhooks import services
from billing.webhooks.models import WebhookDelivery, WebhookEvent
from core.money import NANO_PER_UNIT

ALL = [
    "balance.low",
    "top_up.succeeded",
    "top_up.failed",
    "auto_top_up.failed",
    "api_key.expiring",
]


@pytest.fixture
def endpoint(org_a):
    return services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url="https://hooks.example.com/in", event_types=ALL
    )


def sent(event_type):
    return [json.loads(b) for b in WebhookEvent.objects.filter(type=event_type).values_list("body", flat=True)]


def top_up(org, kind=TopUp.Kind.MANUAL):
    return TopUp.objects.create(
        organization=org, kind=kind, status=TopUp.Status.PROCESSING, amount_nano=20 * NANO_PER_UNIT, currency="USD"
    )


def intent(t):
    return {
        "id": f"pi_hooks_{t.pk}",
        "amount": 2000,
        "currency": "usd",
        "metadata": {"top_up_id": str(t.pk), "organization_id": str(t.organization_id)},
    }


def test_a_paid_top_up_is_sent_once(org_a, endpoint):
    paying = top_up(org_a)
    topup_paid(payment_intent=intent(paying))
    topup_paid(payment_intent=intent(paying))  # Stripe's retry
    (event,) = sent("top_up.succeeded")
    assert (
        event["data"]["top_up"] | {"id": paying.pk, "amount": "20.00", "status": "succeeded"} == event["data"]["top_up"]
    )
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1


def test_a_failed_manual_top_up_is_top_up_failed_and_an_automatic_one_auto_top_up_failed(org_a, endpoint):
    manual = top_up(org_a)
    assert topup_fail(top_up_id=manual.pk, message="Your card was declined.", code="card_declined")
    assert not topup_fail(top_up_id=manual.pk, message="again", code="card_declined")
    (event,) = sent("top_up.failed")
    assert event["data"]["top_up"]["failure_code"] == "card_declined"
    automatic = top_up(org_a, kind=TopUp.Kind.AUTO)
    assert auto_topup_failed(top_up_id=automatic.pk, message="Insufficient funds.", code="card_declined")
    (auto,) = sent("auto_top_up.failed")
    assert auto["data"]["top_up"]["id"] == automatic.pk
    assert len(sent("top_up.failed")) == 1  # the automatic one is not announced twice


def test_a_low_balance_is_sent_once_a_day(org_a, endpoint):
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=NANO_PER_UNIT, idempotency_key="hooks-low", actor="test"
    )
    notices_send(organization_id=org_a.pk)
    notices_send(organization_id=org_a.pk)
    (event,) = sent("balance.low")
    assert event["data"]["balance"]["available"] == "1.00" and event["data"]["balance"]["threshold"] == "5.00"
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        notices_send(organization_id=org_a.pk)
    assert len(sent("balance.low")) == 2


def test_a_key_about_to_expire_is_sent_once_per_expiry(org_a, endpoint, settings):
    settings.WEBHOOKS_KEY_EXPIRING_DAYS = 7
    soon, _ = apikey_create(
        organization_id=org_a.pk, created_by=None, name="ci", expires_at=timezone.now() + timedelta(days=3)
    )
    apikey_create(
        organization_id=org_a.pk, created_by=None, name="later", expires_at=timezone.now() + timedelta(days=30)
    )
    apikey_create(organization_id=org_a.pk, created_by=None, name="never")
    assert services.webhook_keys_expiring_emit() == 1
    assert services.webhook_keys_expiring_emit() == 0
    (event,) = sent("api_key.expiring")
    assert event["data"]["api_key"]["key_id"] == soon.key_id
    apikey_update(api_key_id=soon.pk, actor=None, expires_at=timezone.now() + timedelta(days=5))
    assert services.webhook_keys_expiring_emit() == 1  # a new expiry is announced again
