"""Refund and dispute events that arrived before their payment's success used to be stored as `ignored` (final),
so their money never moved. Mark them `waiting`, with the PaymentIntent they name: the events retry sweep then
applies the ones whose payment has been paid since, and keeps the others waiting, visible, for their payment."""

import json

from django.db import migrations

# What the handlers answered for a refund or dispute of a payment that was not a paid top-up (yet).
NOTES = ("not a refund of a paid top-up of this product", "not a dispute of a paid top-up of this product")
TYPES = (
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)


def _payment_intent(payload: str) -> str:
    try:
        obj = json.loads(payload)["data"]["object"]
    except (ValueError, RecursionError, KeyError, TypeError):
        return ""
    payment_intent = obj.get("payment_intent") if isinstance(obj, dict) else None
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id")
    return payment_intent if isinstance(payment_intent, str) and 0 < len(payment_intent) <= 255 else ""


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    StripeEvent = apps.get_model("payments", "StripeEvent")
    ignored = StripeEvent.objects.filter(status="ignored", type__in=TYPES).only("pk", "payload", "error")
    for event in ignored.iterator():
        payment_intent = _payment_intent(event.payload)
        if not payment_intent or not event.error.startswith(NOTES):
            continue
        StripeEvent.objects.filter(pk=event.pk).update(
            status="waiting",
            processed_at=None,
            attempts=0,
            payment_intent_id=payment_intent,
            error=f"waits for the payment_intent.succeeded of {payment_intent} (was ignored: {event.error})"[:5000],
        )


class Migration(migrations.Migration):
    dependencies = [("payments", "0005_stripe_event_waiting")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
