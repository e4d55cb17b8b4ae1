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
from billing.payments.services.topups import waits_for_card
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

# The failure code of a top-up the customer left unfinished (shown as "Abandoned").
ABANDONED = "abandoned"

# PaymentIntents that wait on the customer, which nobody but the customer can move on (and `waits_for_card`).
ABANDONABLE = ("requires_action", "requires_confirmation")


def topups_reconcile(*, older_than_seconds: int | None = None, organization_id: int | None = None) -> dict[str, int]:
    """Settle every charged top-up still in flight after `older_than_seconds` (TOPUP_RECONCILE_AFTER_SECONDS).

    A PaymentIntent still waiting for the customer (3-D Secure never finished, a confirmation never sent)
    TOPUP_ABANDON_AFTER_SECONDS after the top-up began is canceled at Stripe and the top-up marked failed, so it
    cannot be paid days later, out of the customer's sight.

    Returns counts: `checked`, `settled` (paid, failed or abandoned now), `open` (Stripe still waiting: 3-D Secure,
    processing),
    `errors` (Stripe not reached, or its answer does not match the top-up; kept in flight and logged).
    `organization_id` limits it to one organization (the top-up page settles its own stale attempts on view).
    """
    age = settings.TOPUP_RECONCILE_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=age)
    # All of them, oldest first (ids only): the ones still open at Stripe must not hide the others behind a page.
    abandoned = timezone.now() - timedelta(seconds=settings.TOPUP_ABANDON_AFTER_SECONDS)
    charged = TopUp.objects.filter(
        status__in=TopUp.IN_FLIGHT, stripe_payment_intent_id__isnull=False, updated_at__lte=cutoff
    )
    if organization_id is not None:
        charged = charged.filter(organization_id=organization_id)
    stuck = list(charged.order_by("updated_at", "pk").values_list("pk", "stripe_payment_intent_id", "created_at"))
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
        # A new card's PaymentIntent the browser never confirmed waits like one left at 3-D Secure: not a failure.
        waiting = waits_for_card(payment_intent) or payment_intent.get("status") in ABANDONABLE
        event_type = None if waiting else FINAL_EVENTS.get(str(payment_intent.get("status")))
        if waiting and created_at <= abandoned:
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
    why = (
        f"The payment was not completed within {abandon_after_text()} and was canceled; no money was taken.",
        ABANDONED,
    )
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


def abandon_after_text() -> str:
    """TOPUP_ABANDON_AFTER_SECONDS for people: "1 hour", "24 hours", "90 minutes"."""
    seconds = settings.TOPUP_ABANDON_AFTER_SECONDS
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(seconds // 60, 1)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def topups_expire_unconfirmed(*, organization_id: int | None = None) -> int:
    """Mark abandoned the manual top-ups whose card was never confirmed (no PaymentIntent: the page was left, or the
    card set-up failed) TOPUP_ABANDON_AFTER_SECONDS after they began. Returns how many.

    These are saved-card top-ups never paid (a new card's PaymentIntent is created when the top-up starts). Nothing
    was charged and nothing can be: such a top-up is charged only through its own PaymentIntent, created by the pay
    step, which claims the top-up with the same kind of conditional UPDATE (`status = pending`), so of the two
    exactly one wins. No Stripe call is needed.
    """
    now = timezone.now()
    unconfirmed = TopUp.objects.filter(
        kind=TopUp.Kind.MANUAL,
        status=TopUp.Status.PENDING,
        stripe_payment_intent_id__isnull=True,
        created_at__lte=now - timedelta(seconds=settings.TOPUP_ABANDON_AFTER_SECONDS),
    )
    if organization_id is not None:
        unconfirmed = unconfirmed.filter(organization_id=organization_id)
    return unconfirmed.update(
        status=TopUp.Status.FAILED,
        failure_code=ABANDONED,
        failure_message=f"The card was not confirmed within {abandon_after_text()}; no money was taken.",
        updated_at=now,
    )


def topups_expire(*, organization_id: int) -> None:
    """Settle an organization's top-up attempts left unfinished past TOPUP_ABANDON_AFTER_SECONDS, when its top-up page
    is viewed, so the page never shows "Waiting for ..." after that even if the beat sweep has not run yet.
    Stripe is asked only about attempts that old (their PaymentIntent is canceled if it still waits)."""
    topups_expire_unconfirmed(organization_id=organization_id)
    topups_reconcile(older_than_seconds=settings.TOPUP_ABANDON_AFTER_SECONDS, organization_id=organization_id)
