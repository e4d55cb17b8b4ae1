"""Stripe webhooks: verify, store, process each event once.

1. `stripe_event_receive` checks the signature on the raw body with Stripe's library and its default tolerance
   (five minutes, on both sides of our clock), before parsing anything, so forged, replayed-late and post-dated
   requests are refused before they touch the parser or the database; then the raw body is stored, once per
   event id, exactly as it arrived.
2. `stripe_event_process` processes a stored event inside its own transaction, with the event row locked: a
   second delivery of the same event (Stripe retries, or twenty at once) waits for the first and finds it done.
   The outcome (processed, ignored, waiting, failed) and the error are kept on the row; failed events are
   processed again by `stripe_events_retry` (a beat task) or the `stripe_events_reprocess` command.
3. Stripe does not promise the order of events. A handler that cannot apply its event yet (a refund or dispute
   of a payment not paid yet, a reinstatement before its withdrawal) raises EventWaits: the event is kept
   `waiting`, with the PaymentIntent it names, and applied in the transaction of the event about that
   PaymentIntent that makes it applicable (`stripe_events_waiting_apply`). Every order then ends in the state
   of Stripe's order.

The handlers only record what Stripe says; the money they move goes through idempotent ledger calls.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.invoicing.services.collection import HANDLERS as INVOICE_HANDLERS
from billing.payments.errors import EventWaits, WebhookRejected
from billing.payments.models import StripeEvent, TopUp
from billing.payments.services.auto_topup import auto_topup_failed
from billing.payments.services.auto_topup_trigger import auto_topup_settled
from billing.payments.services.common import payment_intent_named
from billing.payments.services.disputes import dispute_changed, dispute_funds_reinstated, dispute_funds_withdrawn
from billing.payments.services.external_refunds import external_refund_changed
from billing.payments.services.refunds import refund_for_stripe_refund, refund_stripe_update
from billing.payments.services.topups import payment_error, topup_fail, topup_for_payment_intent, topup_paid

logger = logging.getLogger(__name__)

# Events we act on. Stripe sends only the types enabled on the endpoint (docs/payments.md lists them); any other
# type is acknowledged and stored as ignored.
Handler = Callable[[dict[str, Any]], str | None]
MAX_ATTEMPTS = 20


def stripe_event_receive(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify a webhook request and store its event (once per event id). Raises WebhookRejected (400).

    The signature is checked on the raw body before anything parses it: nobody without the secret can make the
    server decode JSON (a body of 100,000 `[` would exhaust the parser's recursion)."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejected("Webhooks are not configured (STRIPE_WEBHOOK_SECRET is empty).")
    if not signature:
        raise WebhookRejected("The Stripe-Signature header is missing.", code="missing_signature")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("The body is not UTF-8 JSON.", code="invalid_json") from None
    _signature_verify(text, signature=signature, secret=secret)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise WebhookRejected("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise WebhookRejected("The body is not a Stripe event (not a JSON object).", code="invalid_event")
    event_id, event_type = data.get("id"), data.get("type")
    if not (isinstance(event_id, str) and event_id.startswith("evt_") and len(event_id) <= 255):
        raise WebhookRejected("The body is not a Stripe event (no event id).", code="invalid_event")
    if not (isinstance(event_type, str) and 0 < len(event_type) <= 255):
        raise WebhookRejected("The body is not a Stripe event (no event type).", code="invalid_event")
    event, _ = StripeEvent.objects.get_or_create(
        event_id=event_id,
        defaults={"type": event_type, "payload": text, "payment_intent_id": _payment_intent_of(event_type, data)},
    )
    return event


def _payment_intent_of(event_type: str, data: dict[str, Any]) -> str:
    """The PaymentIntent an event is about (empty when it names none): how a waiting event is found again."""
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not isinstance(obj, dict):
        return ""
    if event_type.startswith("payment_intent."):
        pi_id = obj.get("id")
        return pi_id if isinstance(pi_id, str) and len(pi_id) <= 255 else ""
    return payment_intent_named(obj) or ""


def _signature_verify(text: str, *, signature: str, secret: str) -> None:
    """Stripe's check of the signature and of a stale timestamp, plus the one its library leaves out: a timestamp
    more than the tolerance ahead of our clock (a signature made for later use) is refused too."""
    tolerance = stripe.Webhook.DEFAULT_TOLERANCE
    try:
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError:
        raise WebhookRejected(
            "The signature does not match this endpoint's secret, or its timestamp is too old.",
            code="invalid_signature",
        ) from None
    # The timestamp the library verified: the first `t=` item (it has parsed it as a number already).
    signed_at = int(next(item.split("=", 2)[1] for item in signature.split(",") if item.split("=", 2)[0] == "t"))
    if signed_at > time.time() + tolerance:
        raise WebhookRejected(
            f"The signature's timestamp is more than {tolerance} seconds in the future; check the clock.",
            code="invalid_signature",
        )


def _object_of(event: StripeEvent) -> dict[str, Any]:
    data = json.loads(event.payload).get("data") or {}
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise ValueError("the event has no data.object")
    return obj


def stripe_event_process(*, stripe_event_id: int) -> StripeEvent:
    """Process a stored event once, in its own transaction; keep the outcome and error on the row.

    An event that acts on a PaymentIntent (its success, a refund, a withdrawal) may make events waiting for that
    PaymentIntent applicable: they are applied in the same transaction, so a refund that arrived before its
    payment's success leaves the wallet in the very transaction that grants the credit (none of it is spendable in
    between)."""
    others_busy = False
    with transaction.atomic(durable=True):
        event = StripeEvent.objects.select_for_update().get(pk=stripe_event_id)
        if event.status in DONE:
            return event
        _event_apply(event)
        if event.status == StripeEvent.Status.PROCESSED and event.payment_intent_id:
            others_busy = stripe_events_waiting_apply(payment_intent_id=event.payment_intent_id)
    if others_busy:
        # A waiting event was being delivered again at this moment (its row locked): once both transactions are
        # committed, it is applied here if that delivery did not manage to.
        stripe_events_waiting_process(payment_intent_id=event.payment_intent_id)
    return event


DONE = (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED)


def _event_apply(event: StripeEvent) -> None:
    """Run the event's handler in a savepoint (the caller holds the event's row lock) and record the outcome:
    processed, ignored (with why), waiting (with what for; nothing the handler did is kept) or failed."""
    handler = HANDLERS.get(event.type)
    status, error = StripeEvent.Status.IGNORED, "not an event type this product acts on"
    if handler is not None:
        try:
            with transaction.atomic():
                note = handler(_object_of(event))
        except EventWaits as exc:
            status, error = StripeEvent.Status.WAITING, str(exc)
        except Exception as exc:  # kept on the row and retried; one bad event must not block the others
            logger.exception("Stripe event %s (%s) failed", event.event_id, event.type)
            status, error = StripeEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"
        else:
            status, error = (StripeEvent.Status.PROCESSED, "") if note is None else (StripeEvent.Status.IGNORED, note)
    event.status = status
    event.error = error[:5000]
    event.attempts += 1
    event.processed_at = timezone.now() if status in DONE else None
    event.save(update_fields=["status", "error", "attempts", "processed_at"])


def stripe_events_waiting_apply(*, payment_intent_id: str) -> bool:
    """Apply, inside the caller's transaction, the events waiting for `payment_intent_id` (and any about it not
    processed yet), in the order they arrived, until none of them can move on (one may wait for another: a
    reinstatement for its withdrawal).

    Rows another transaction holds (the same event being processed by its own delivery right now) are skipped
    rather than waited for: that transaction may be waiting for the top-up row this one holds, or may have judged
    the payment unpaid before this transaction commits. Returns whether any was skipped, so the caller goes over
    them again once committed (stripe_events_waiting_process)."""
    unsettled = StripeEvent.objects.filter(payment_intent_id=payment_intent_id, status__in=UNSETTLED)
    while True:
        locked = list(unsettled.select_for_update(skip_locked=True).order_by("received_at", "id"))
        moved = False
        for waiting_event in locked:
            _event_apply(waiting_event)
            moved = moved or waiting_event.status != StripeEvent.Status.WAITING
        if not moved:
            return unsettled.count() > len(locked)


def stripe_events_waiting_process(*, payment_intent_id: str) -> None:
    """Process the events waiting for `payment_intent_id` (or not processed yet), each in its own transaction: after
    a payment was settled outside a webhook, or when another delivery held one of them. Waits for those rows."""
    unsettled = StripeEvent.objects.filter(payment_intent_id=payment_intent_id, status__in=UNSETTLED)
    for pk in list(unsettled.order_by("received_at", "id").values_list("id", flat=True)):
        # The first one applied takes the others it makes applicable with it; those are done when reached here.
        stripe_event_process(stripe_event_id=pk)


# Stored but not settled: never processed (or being processed right now by its own delivery), or waiting.
UNSETTLED = (StripeEvent.Status.RECEIVED, StripeEvent.Status.WAITING)


def stripe_events_retry(*, limit: int = 100, event_ids: list[str] | None = None) -> list[StripeEvent]:
    """Process failed and never processed events again, oldest first; returns them with their new status.

    Waiting events are applied by the event they wait for. The sweep is the safety net for a crash between the
    two, so it takes only waiting events whose payment has been paid; one about a payment we never saw stays
    waiting, visible, without taking the sweep's places from failed events. Named events are taken in any of
    these states."""
    if event_ids is not None:
        pending = StripeEvent.objects.filter(event_id__in=event_ids, status__in=[*UNSETTLED, StripeEvent.Status.FAILED])
    else:
        paid = TopUp.objects.filter(status=TopUp.Status.SUCCEEDED).values("stripe_payment_intent_id")
        pending = StripeEvent.objects.filter(
            Q(status__in=[StripeEvent.Status.FAILED, StripeEvent.Status.RECEIVED])
            | Q(status=StripeEvent.Status.WAITING, payment_intent_id__in=paid),
            attempts__lt=MAX_ATTEMPTS,
        )
    ids = list(pending.order_by("received_at", "id").values_list("id", flat=True)[:limit])
    return [stripe_event_process(stripe_event_id=pk) for pk in ids]


# --- handlers: each gets the event's data.object; returns None when it acted, or why the event needs nothing ---


def _payment_intent_succeeded(payment_intent: dict[str, Any]) -> str | None:
    top_up = topup_paid(payment_intent=payment_intent)
    if top_up is None:
        return "not a PaymentIntent of a top-up"
    auto_topup_settled(top_up=top_up)
    return None


def payment_intent_failed(payment_intent: dict[str, Any], *, why: tuple[str, str] | None = None) -> str | None:
    """Mark the in-flight top-up `payment_intent` pays as failed, with Stripe's reason or `why` (message, code).
    Returns a note when there is nothing to do (not ours, or already settled)."""
    top_up = topup_for_payment_intent(payment_intent)
    if top_up is None or not top_up.in_flight:
        return "not an in-flight top-up (not ours, or already settled)"
    message, code = why or payment_error(payment_intent)
    fail = auto_topup_failed if top_up.kind == TopUp.Kind.AUTO else topup_fail
    fail(top_up_id=top_up.pk, message=message, code=code, payment_intent_id=str(payment_intent["id"]))
    return None


def _refund_changed(stripe_refund: dict[str, Any]) -> str | None:
    refund = refund_for_stripe_refund(stripe_refund)
    if refund is None:
        # Made outside this product (in Stripe's Dashboard, say): its credit still has to leave the wallet.
        if external_refund_changed(stripe_refund=stripe_refund) is None:
            return "not a refund of a paid top-up of this product, or one still under way"
        return None
    refund_stripe_update(refund_id=refund.pk, stripe_refund=stripe_refund)
    return None


def _dispute_handler(act: Callable[..., Any]) -> Handler:
    def handle(stripe_dispute: dict[str, Any]) -> str | None:
        if act(stripe_dispute=stripe_dispute) is None:
            return "not a dispute of a paid top-up of this product"
        return None

    return handle


HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_failed,
    "payment_intent.canceled": payment_intent_failed,
    "refund.created": _refund_changed,
    "refund.updated": _refund_changed,
    "refund.failed": _refund_changed,
    # Older API versions announce refund changes under this name.
    "charge.refund.updated": _refund_changed,
    "charge.dispute.created": _dispute_handler(dispute_changed),
    "charge.dispute.updated": _dispute_handler(dispute_changed),
    "charge.dispute.closed": _dispute_handler(dispute_changed),
    "charge.dispute.funds_withdrawn": _dispute_handler(dispute_funds_withdrawn),
    "charge.dispute.funds_reinstated": _dispute_handler(dispute_funds_reinstated),
    # Invoices (billing.invoicing): collection state.
    **INVOICE_HANDLERS,
}
