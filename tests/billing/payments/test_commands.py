"""stripe_events_reprocess: failed webhook events processed again from their stored payload."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.payments import services
from billing.payments.models import StripeEvent, TopUp
from tests.billing.payments.helpers import stripe_signature, usd


def store(event: dict) -> StripeEvent:
    payload = json.dumps(event)
    return services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))


def succeeded(top_up: TopUp, event_id: str) -> dict:
    payment_intent = {
        "id": top_up.stripe_payment_intent_id,
        "object": "payment_intent",
        "amount": top_up.amount_cents,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"top_up_id": str(top_up.pk), "organization_id": str(top_up.organization_id)},
    }
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": payment_intent}}


def test_failed_events_are_processed_again(org_a):
    top_up = TopUp.objects.create(
        organization=org_a, kind="manual", status="processing", amount_nano=usd("10"), stripe_payment_intent_id="pi_c1"
    )
    event = store(succeeded(top_up, "evt_cmd_1"))
    TopUp.objects.filter(pk=top_up.pk).update(amount_nano=usd("11"))  # disagrees with Stripe: processing fails
    assert services.stripe_event_process(stripe_event_id=event.pk).status == "failed"
    TopUp.objects.filter(pk=top_up.pk).update(amount_nano=usd("10"))

    out = StringIO()
    call_command("stripe_events_reprocess", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "events": [{"id": "evt_cmd_1", "type": "payment_intent.succeeded", "status": "processed", "error": ""}]
    }
    assert TopUp.objects.get(pk=top_up.pk).status == "succeeded"
    out = StringIO()
    call_command("stripe_events_reprocess", stdout=out)
    assert out.getvalue().strip() == "Nothing to process."


def test_unknown_event_ids_are_refused(db):
    with pytest.raises(CommandError, match="no stored event with id evt_nope"):
        call_command("stripe_events_reprocess", "evt_nope")


def test_a_metadata_top_up_that_does_not_exist_fails_the_event_instead_of_dropping_it(org_a):
    event = succeeded(
        TopUp(pk=987654, organization_id=org_a.pk, amount_nano=usd("10"), stripe_payment_intent_id="pi_x"), "evt_cmd_2"
    )
    stored = services.stripe_event_process(stripe_event_id=store(event).pk)
    assert stored.status == "failed" and "does not exist" in stored.error
