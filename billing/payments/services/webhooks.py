"""Stripe webhooks: verify, store, process each event once.

1. `stripe_event_receive` checks the signature with Stripe's library and its default tolerance (five minutes),
   so forged and replayed-late requests are refused before they touch the database; then the raw body is stored,
   once per event id, exactly as it arrived.
2. `stripe_event_process` processes a stored event inside its own transaction, with the event row locked: a
   second delivery of the same event (Stripe retries, or twenty at once) waits for the first and finds it done.
   The outcome (processed, ignored, failed) and the error are kept on the row; failed events are processed
   again by `stripe_events_retry` (a beat task) or the `stripe_events_reprocess` command.

The handlers only record what Stripe says; the money they move goes through idempotent ledger calls.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.invoicing.services.collection import HANDLERS as INVOICE_HANDLERS
from billing.payments.errors import WebhookRejected
from billing.payments.models import StripeEvent, TopUp
from billing.payments.services.auto_topup import auto_topup_failed
from billing.payments.services.auto_topup_trigger import auto_topup_settled
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
    """Verify a webhook request and store its event (once per event id). Raises WebhookRejected (400)."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejected("Webhooks are not configured (STRIPE_WEBHOOK_SECRET is empty).")
    if not signature:
        raise WebhookRejected("The Stripe-Signature header is missing.", code="missing_signature")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("The body is not UTF-8 JSON.", code="invalid_json") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise WebhookRejected("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise WebhookRejected("The body is not a Stripe event (not a JSON object).", code="invalid_event")
    try:
        stripe.Webhook.construct_event(text, signature, secret)
    except stripe.SignatureVerificationError:
        raise WebhookRejected(
            "The signature does not match this endpoint's secret, or its timestamp is too old.",
            code="invalid_signature",
        ) from None
    event_id, event_type = data.get("id"), data.get("type")
    if not (isinstance(event_id, str) and event_id.startswith("evt_") and len(event_id) <= 255):
        raise WebhookRejected("The body is not a Stripe event (no event id).", code="invalid_event")
    if not (isinstance(event_type, str) and 0 < len(event_type) <= 255):
        raise WebhookRejected("The body is not a Stripe event (no event type).", code="invalid_event")
    event, _ = StripeEvent.objects.get_or_create(event_id=event_id, defaults={"type": event_type, "payload": text})
    return event


def _object_of(event: StripeEvent) -> dict[str, Any]:
    data = json.loads(event.payload).get("data") or {}
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise ValueError("the event has no data.object")
    return obj


def stripe_event_process(*, stripe_event_id: int) -> StripeEvent:
    """Process a stored event once, in its own transaction; keep the outcome and error on the row."""
    with transaction.atomic(durable=True):
        event = StripeEvent.objects.select_for_update().get(pk=stripe_event_id)
        if event.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
            return event
        handler = HANDLERS.get(event.type)
        status, error = StripeEvent.Status.IGNORED, "not an event type this product acts on"
        if handler is not None:
            try:
                with transaction.atomic():
                    note = handler(_object_of(event))
            except Exception as exc:  # kept on the row and retried; one bad event must not block the others
                logger.exception("Stripe event %s (%s) failed", event.event_id, event.type)
                status, error = StripeEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"
            else:
                status, error = (
                    (StripeEvent.Status.PROCESSED, "") if note is None else (StripeEvent.Status.IGNORED, note)
                )
        event.status = status
        event.error = error[:5000]
        event.attempts += 1
        event.processed_at = None if status == StripeEvent.Status.FAILED else timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
    return event


def stripe_events_retry(*, limit: int = 100, event_ids: list[str] | None = None) -> list[StripeEvent]:
    """Process failed (or never processed) events again, oldest first; returns them with their new status."""
    pending = StripeEvent.objects.filter(status__in=[StripeEvent.Status.FAILED, StripeEvent.Status.RECEIVED])
    if event_ids is not None:
        pending = pending.filter(event_id__in=event_ids)
    else:
        pending = pending.filter(attempts__lt=MAX_ATTEMPTS)
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
