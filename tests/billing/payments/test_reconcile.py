"""Top-ups whose webhook was lost: the beat task asks Stripe (localstripe) how each PaymentIntent stands and settles
the top-up through the webhook's own handlers, so the sweep and a late webhook credit once between them."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing.ledger.models import Grant
from billing.payments import services, tasks
from billing.payments.errors import PaymentDeclined
from billing.payments.models import TopUp
from billing.payments.stripe_client import stripe_client
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_setup,
    charge,
    deliver,
    succeeded_event_json,
    usd,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _age(top_up: TopUp, *, status: str = "processing", seconds: int = 3600) -> None:
    TopUp.objects.filter(pk=top_up.pk).update(status=status, updated_at=timezone.now() - timedelta(seconds=seconds))


def test_the_beat_schedule_runs_the_sweep():
    entry = settings.CELERY_BEAT_SCHEDULE["payments-topups-reconcile"]
    assert entry["task"] == "billing.payments.tasks.topups_reconcile_task"
    assert entry["schedule"] == float(settings.TOPUP_RECONCILE_INTERVAL_SECONDS)


def test_a_paid_top_up_whose_webhook_was_lost_is_credited_once(localstripe, live_url, org_a, alice, eager_celery):
    top_up = charge(org_a, alice, localstripe)
    assert top_up.status == "processing" and top_up.stripe_payment_intent_id
    _age(top_up)

    result = tasks.topups_reconcile_task.delay().get()
    assert result == {"checked": 1, "settled": 1, "open": 0, "errors": 0}
    top_up.refresh_from_db()
    assert top_up.status == "succeeded" and top_up.grant_id is not None
    assert available(org_a.pk) == usd("20")

    # The next run finds nothing; the webhook arriving late credits nothing more.
    assert services.topups_reconcile()["checked"] == 0
    response = deliver(f"{live_url}/stripe/webhook/", succeeded_event_json(top_up))
    assert response.status_code == 200
    assert available(org_a.pk) == usd("20")
    assert Grant.objects.filter(source_ref=top_up.stripe_payment_intent_id).count() == 1


def test_a_recent_top_up_is_left_to_its_webhook(localstripe, org_a, alice):
    top_up = charge(org_a, alice, localstripe)
    assert services.topups_reconcile()["checked"] == 0
    # Older than the setting: it is settled.
    assert services.topups_reconcile(older_than_seconds=0)["settled"] == 1
    assert available(org_a.pk) == usd("20")
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"


def test_a_declined_top_up_whose_answer_was_lost_is_marked_failed(localstripe, org_a, alice):
    top_up = charge(org_a, alice, localstripe, card=CARD_DECLINED_AT_CHARGE)
    assert top_up.status == "failed" and top_up.stripe_payment_intent_id
    # As if neither the confirmation's answer nor the webhook had come back.
    TopUp.objects.filter(pk=top_up.pk).update(failure_message="", failure_code="")
    _age(top_up)

    assert services.topups_reconcile() == {"checked": 1, "settled": 1, "open": 0, "errors": 0}
    top_up.refresh_from_db()
    assert top_up.status == "failed" and top_up.failure_message
    assert available(org_a.pk) == 0


def test_a_payment_intent_that_does_not_match_its_top_up_is_not_credited(localstripe, org_a, alice):
    top_up = charge(org_a, alice, localstripe)
    # Our record says 25.00; Stripe charged 20.00: nothing is credited on a guess, the top-up stays in flight.
    TopUp.objects.filter(pk=top_up.pk).update(amount_nano=usd("25"))
    _age(top_up)
    assert services.topups_reconcile() == {"checked": 1, "settled": 0, "open": 0, "errors": 1}
    top_up.refresh_from_db()
    assert top_up.status == "processing"
    assert available(org_a.pk) == 0


def test_every_stuck_top_up_is_checked_not_only_a_first_page(localstripe, org_a, alice):
    top_ups = [charge(org_a, alice, localstripe, amount="5.00") for _ in range(3)]
    for top_up in top_ups:
        _age(top_up)
    assert services.topups_reconcile()["settled"] == 3
    assert available(org_a.pk) == usd("15")


def test_pending_top_ups_without_a_charge_are_not_touched(localstripe, org_a, alice):
    started = services.topup_start(organization_id=org_a.pk, amount="20.00", actor=alice)
    _age(started.top_up, status="pending")
    assert services.topups_reconcile()["checked"] == 0
    started.top_up.refresh_from_db()
    assert started.top_up.status == "pending"


def test_a_top_up_whose_authentication_was_never_finished_is_canceled_after_an_hour(localstripe, org_a, alice):
    top_up = charge(org_a, alice, localstripe, card=CARD_NEEDS_AUTHENTICATION)
    assert top_up.status == "requires_action"
    # Within the hour (TOPUP_ABANDON_AFTER_SECONDS): still the customer's to finish.
    _age(top_up, status="requires_action")
    assert services.topups_reconcile() == {"checked": 1, "settled": 0, "open": 1, "errors": 0}

    TopUp.objects.filter(pk=top_up.pk).update(created_at=timezone.now() - timedelta(hours=1, seconds=1))
    assert services.topups_reconcile() == {"checked": 1, "settled": 1, "open": 0, "errors": 0}
    top_up.refresh_from_db()
    assert (top_up.status, top_up.failure_code) == ("failed", "abandoned")
    assert "not completed within 1 hour and was canceled" in top_up.failure_message
    assert top_up.status_label == "Abandoned"
    assert stripe_client().v1.payment_intents.retrieve(top_up.stripe_payment_intent_id).status == "canceled"
    assert available(org_a.pk) == 0
    # Done: the next run has nothing to look at.
    assert services.topups_reconcile()["checked"] == 0


def test_a_top_up_whose_card_was_never_confirmed_is_abandoned_after_an_hour(localstripe, org_a, alice, eager_celery):
    fresh = services.topup_start(organization_id=org_a.pk, amount="20.00", actor=alice).top_up
    left = services.topup_start(organization_id=org_a.pk, amount="30.00", actor=alice).top_up
    TopUp.objects.filter(pk=left.pk).update(created_at=timezone.now() - timedelta(hours=1, seconds=1))

    tasks.topups_reconcile_task.delay().get()
    left.refresh_from_db()
    fresh.refresh_from_db()
    assert (left.status, left.failure_code, left.status_label) == ("failed", "abandoned", "Abandoned")
    assert "not confirmed within 1 hour" in left.failure_message
    assert fresh.status == "pending"  # still the customer's to finish
    # The page it was left on can no longer charge it.
    setup_intent = browser_confirm_card_setup(localstripe.url, _secret_of(left), CARD_OK)
    with pytest.raises(PaymentDeclined):
        services.topup_pay(organization_id=org_a.pk, top_up_id=left.pk, setup_intent_id=setup_intent["id"])
    left.refresh_from_db()
    assert left.status == "failed" and left.stripe_payment_intent_id is None
    assert available(org_a.pk) == 0


def _secret_of(top_up: TopUp) -> str:
    return str(stripe_client().v1.setup_intents.retrieve(top_up.stripe_setup_intent_id).client_secret)
