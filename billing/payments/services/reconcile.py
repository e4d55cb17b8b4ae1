"""Top-ups whose webhook never came: ask Stripe how their PaymentIntent stands and settle them the way the webhook
would have.

A top-up that was charged but is still in flight long after (its `payment_intent.succeeded` or `payment_failed` was
lost, or the endpoint was down longer than Stripe retries) would otherwise never be credited. The sweep reads each
PaymentIntent from Stripe (outside any transaction) and passes it to the webhook's own handler, in a transaction of its
own: the same row lock, the same exact checks (PaymentIntent, metadata, amount, currency) and the same grant
idempotency key, so a webhook arriving before, during or after the sweep still credits once.
"""

import logging
from datetime import timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.payments.models import TopUp
from billing.payments.services.webhooks import (
    HANDLERS,
    payment_intent_failed,
    stripe_events_waiting_apply,
    stripe_events_waiting_process,
)
from billing.payments.stripe_client import intent_options, stripe_client

logger = logging.getLogger(__name__)

# The PaymentIntent statuses that end a top-up, and the webhook event that would have told us.
FINAL_EVENTS = {
    "succeeded": "payment_intent.succeeded",
    # After a failed attempt Stripe puts the PaymentIntent back to waiting for a card.
    "requires_payment_method": "payment_intent.payment_failed",
    "canceled": "payment_intent.canceled",
}

# PaymentIntents that wait on the customer, which nobody but the customer can move on.
ABANDONABLE = ("requires_action", "requires_confirmation")


def topups_reconcile(*, older_than_seconds: int | None = None) -> dict[str, int]:
    """Settle every charged top-up still in flight after `older_than_seconds` (TOPUP_RECONCILE_AFTER_SECONDS).

    A PaymentIntent still waiting for the customer (3-D Secure never finished, a confirmation never sent)
    TOPUP_ABANDON_AFTER_SECONDS after the top-up began is canceled at Stripe and the top-up marked failed, so it
    cannot be paid days later, out of the customer's sight.

    Returns counts: `checked`, `settled` (paid, failed or abandoned now), `open` (Stripe still waiting: 3-D Secure,
    processing),
    `errors` (Stripe not reached, or its answer does not match the top-up; kept in flight and logged).
    """
    age = settings.TOPUP_RECONCILE_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=age)
    # All of them, oldest first (ids only): the ones still open at Stripe must not hide the others behind a page.
    abandoned = timezone.now() - timedelta(seconds=settings.TOPUP_ABANDON_AFTER_SECONDS)
    stuck = list(
        TopUp.objects.filter(status__in=TopUp.IN_FLIGHT, stripe_payment_intent_id__isnull=False, updated_at__lte=cutoff)
        .order_by("updated_at", "pk")
        .values_list("pk", "stripe_payment_intent_id", "created_at")
    )
    counts = {"checked": 0, "settled": 0, "open": 0, "errors": 0}
    for top_up_id, payment_intent_id, created_at in stuck:
        counts["checked"] += 1
        try:
            payment_intent: dict[str, Any] = (
                stripe_client().v1.payment_intents.retrieve(str(payment_intent_id)).to_dict()
            )
        except stripe.StripeError as exc:
            logger.warning("top-up %s: PaymentIntent %s not read from Stripe: %s", top_up_id, payment_intent_id, exc)
            counts["errors"] += 1
            continue
        event_type = FINAL_EVENTS.get(str(payment_intent.get("status")))
        if event_type is None and created_at <= abandoned and payment_intent.get("status") in ABANDONABLE:
            if _abandon(top_up_id, payment_intent):
                counts["settled"] += 1
            else:
                counts["errors"] += 1
            continue
        if event_type is None:
            counts["open"] += 1
            continue
        others_busy = False
        try:
            with transaction.atomic():
                note = HANDLERS[event_type](payment_intent)
                if note is None and event_type == "payment_intent.succeeded":
                    # Refunds and disputes that arrived before the (lost) success: applied with the credit.
                    others_busy = stripe_events_waiting_apply(payment_intent_id=str(payment_intent_id))
        except (LookupError, ValueError) as exc:
            # Stripe's answer does not match our record: never credit on a guess; a person looks at the log.
            logger.error("top-up %s: PaymentIntent %s not settled: %s", top_up_id, payment_intent_id, exc)
            counts["errors"] += 1
            continue
        if others_busy:
            stripe_events_waiting_process(payment_intent_id=str(payment_intent_id))
        if note is None:
            logger.info("top-up %s settled from Stripe's %s PaymentIntent (no webhook)", top_up_id, event_type)
            counts["settled"] += 1
    return counts


def _abandon(top_up_id: int, payment_intent: dict[str, Any]) -> bool:
    """Cancel a top-up's PaymentIntent the customer never finished, and mark the top-up failed. False (logged) if
    Stripe refuses (it moved on meanwhile: the next run reads how it ended) or the answer does not match."""
    hours = settings.TOPUP_ABANDON_AFTER_SECONDS / 3600
    why = (f"The payment was not completed within {hours:g} hours and was canceled; no money was taken.", "abandoned")
    try:
        options = intent_options(idempotency_key=f"top-up-{top_up_id}-abandon")
        canceled = stripe_client().v1.payment_intents.cancel(str(payment_intent["id"]), options=options).to_dict()
    except stripe.StripeError as exc:
        logger.warning("top-up %s: PaymentIntent %s not canceled: %s", top_up_id, payment_intent["id"], exc)
        return False
    try:
        with transaction.atomic():
            payment_intent_failed(canceled, why=why)
    except (LookupError, ValueError) as exc:
        logger.error("top-up %s: canceled PaymentIntent %s not settled: %s", top_up_id, payment_intent["id"], exc)
        return False
    logger.info("top-up %s abandoned: PaymentIntent %s canceled", top_up_id, payment_intent["id"])
    return True
