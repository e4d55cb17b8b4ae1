"""Top-ups whose webhook was lost: the beat task asks Stripe (localstripe) how each PaymentIntent stands and settles
the top-up through the webhook's own handlers, so the sweep and a late webhook credit once between them."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing.ledger.models import Grant
from billing.payments import services, tasks
from billing.payments.errors import PaymentDeclined
from billing.payments.models import AutoTopUp, TopUp
from billing.payments.stripe_client import stripe_client
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_payment,
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


def test_a_new_cards_payment_still_waiting_for_the_card_is_left_to_the_customer(localstripe, org_a, alice):
    started = services.topup_start(organization_id=org_a.pk, amount="20.00", actor=alice)
    _age(started.top_up, status="pending")
    # Waiting for a payment method with no failed attempt: not a failure (a declined card leaves an error).
    assert services.topups_reconcile() == {"checked": 1, "settled": 0, "open": 1, "errors": 0}
    started.top_up.refresh_from_db()
    assert started.top_up.status == "pending"


def test_saved_card_top_ups_never_paid_are_not_asked_about(localstripe, org_a, alice):
    AutoTopUp.objects.create(organization=org_a, stripe_payment_method_id="pm_card_visa", card_last4="4242")
    started = services.topup_start(organization_id=org_a.pk, amount="20.00", actor=alice, card="saved")
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
    left = services.topup_start(organization_id=org_a.pk, amount="30.00", actor=alice)
    an_hour_ago = timezone.now() - timedelta(hours=1, seconds=1)
    TopUp.objects.filter(pk=left.top_up.pk).update(created_at=an_hour_ago, updated_at=an_hour_ago)

    tasks.topups_reconcile_task.delay().get()
    left.top_up.refresh_from_db()
    fresh.refresh_from_db()
    assert (left.top_up.status, left.top_up.failure_code, left.top_up.status_label) == (
        "failed",
        "abandoned",
        "Abandoned",
    )
    assert "not completed within 1 hour and was canceled" in left.top_up.failure_message
    assert fresh.status == "pending"  # still the customer's to finish
    # The page it was left on can no longer charge it: its PaymentIntent is canceled at Stripe.
    assert stripe_client().v1.payment_intents.retrieve(str(left.top_up.stripe_payment_intent_id)).status == "canceled"
    assert left.payment_intent_client_secret is not None
    late = browser_confirm_card_payment(localstripe.url, left.payment_intent_client_secret, CARD_OK)
    assert late["error"]["code"] == "payment_intent_unexpected_state"
    with pytest.raises(PaymentDeclined):
        services.topup_pay(organization_id=org_a.pk, top_up_id=left.top_up.pk)
    assert available(org_a.pk) == 0


def test_a_saved_card_top_up_never_paid_is_abandoned_after_an_hour(localstripe, org_a, alice):
    AutoTopUp.objects.create(organization=org_a, stripe_payment_method_id="pm_card_visa", card_last4="4242")
    left = services.topup_start(organization_id=org_a.pk, amount="30.00", actor=alice, card="saved").top_up
    TopUp.objects.filter(pk=left.pk).update(created_at=timezone.now() - timedelta(hours=1, seconds=1))
    services.topups_expire(organization_id=org_a.pk)
    left.refresh_from_db()
    assert (left.status, left.failure_code) == ("failed", "abandoned")
    assert "not confirmed within 1 hour" in left.failure_message
    with pytest.raises(PaymentDeclined):
        services.topup_pay(organization_id=org_a.pk, top_up_id=left.pk)
    left.refresh_from_db()
    assert left.status == "failed" and left.stripe_payment_intent_id is None
