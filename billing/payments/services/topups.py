"""Manual top-ups: the customer picks an amount and pays with the saved card or a new one; credit arrives only with
Stripe's signed `payment_intent.succeeded` webhook (`topup_paid`), never on the browser's word.

A new card: the server creates the PaymentIntent (with `setup_future_usage="off_session"`, so Stripe keeps the card
on the customer once it is paid) and the page confirms it with `stripe.confirmCardPayment(clientSecret,
{payment_method: {card}})`, which runs 3-D Secure if the bank asks: one authentication, and the card is then the
organization's saved card (auto top-up, later top-ups, invoices). The saved card: the pay step creates and confirms
the PaymentIntent with it, and the page runs 3-D Secure only if the answer asks for it.

No Stripe call is made inside a database transaction. Steps that must not run twice are claimed with one
conditional UPDATE (`status = pending -> processing`), and every Stripe call carries an idempotency key derived
from the top-up's id, so a retried request gets the same PaymentIntent back.
"""

import logging
from dataclasses import dataclass
from typing import Any

import stripe
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.ids import is_id_text
from accounts.models import Organization
from billing.ledger import services as ledger
from billing.payments.errors import NotFound, PaymentDeclined, PaymentsUnavailable
from billing.payments.models import AutoTopUp, StripeCustomer, TopUp
from billing.payments.services.cards import saved_card_keep
from billing.payments.services.common import (
    stripe_unavailable,
    top_up_metadata,
    topup_amount_clean,
)
from billing.payments.services.customers import with_stripe_customer
from billing.payments.services.events import topup_event_emit
from billing.payments.stripe_client import intent_options, stripe_client, stripe_error_message
from billing.webhooks.models import EventType
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None

# What a top-up whose card step never finished reads as (the browser's card step failed or was left).
CARD_NOT_CONFIRMED = ("The card was not confirmed; no money was taken.", "card_not_confirmed")


@dataclass(frozen=True)
class TopUpStarted:
    top_up: TopUp
    # For stripe.confirmCardPayment with the new card's details; None when the top-up pays with the saved card.
    payment_intent_client_secret: str | None


@dataclass(frozen=True)
class TopUpCharged:
    top_up: TopUp
    # Set when the bank asks for 3-D Secure: the browser calls stripe.confirmCardPayment with it.
    payment_intent_client_secret: str | None = None


def _top_up_of(*, organization_id: int, top_up_id: int, kind: str = TopUp.Kind.MANUAL) -> TopUp:
    # Another organization's top-up reads exactly like one that does not exist.
    top_up = TopUp.objects.filter(pk=top_up_id, organization_id=organization_id, kind=kind).first()
    if top_up is None:
        raise NotFound("top-up not found", param="top_up_id")
    return top_up


def topup_start(*, organization_id: int, amount: object, actor: Actor, card: object = "new") -> TopUpStarted:
    """Record a top-up of `amount` (a decimal string) and create the PaymentIntent the browser confirms with a new
    card, or, with `card="saved"`, pay with the organization's saved card (the pay step charges it)."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise NotFound("organization not found", param="organization_id")
    if card not in ("new", "saved"):
        raise ApplicationError('card must be "new" or "saved"', param="card", code="invalid_card")
    amount_nano = topup_amount_clean(amount, currency=organization.currency)
    saved = AutoTopUp.objects.filter(organization_id=organization_id).exclude(stripe_payment_method_id="").first()
    if card == "saved" and saved is None:
        raise ApplicationError(
            "There is no saved card any more. Enter a card to pay with.", param="card", code="no_saved_card"
        )
    top_up = TopUp.objects.create(
        organization=organization,
        kind=TopUp.Kind.MANUAL,
        status=TopUp.Status.PENDING,
        amount_nano=amount_nano,
        currency=organization.currency,
        created_by_id=actor.pk if isinstance(actor, AbstractBaseUser) else None,
        # The card chosen now is the one charged, even if the saved card is replaced before the pay step.
        stripe_payment_method_id=saved.stripe_payment_method_id if card == "saved" and saved else "",
        card_last4=saved.card_last4 if card == "saved" and saved else "",
    )
    if card == "saved":
        return TopUpStarted(top_up=top_up, payment_intent_client_secret=None)

    def payment_intent(customer_id: str) -> stripe.PaymentIntent:
        params: Any = {
            "amount": top_up.amount_cents,
            "currency": top_up.currency.lower(),
            "customer": customer_id,
            # Kept on the customer once paid, for charges without the customer present (auto top-up, invoices).
            "setup_future_usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": top_up_metadata(top_up_id=top_up.pk, organization_id=organization_id, kind=top_up.kind),
        }
        return stripe_client().v1.payment_intents.create(
            params=params, options=intent_options(idempotency_key=f"top-up-{top_up.pk}-payment-intent")
        )

    try:
        intent = with_stripe_customer(organization_id=organization_id, call=payment_intent)
    except stripe.StripeError as exc:
        logger.warning("top-up %s: PaymentIntent not created: %s", top_up.pk, exc)
        topup_fail(top_up_id=top_up.pk, message=stripe_error_message(exc), code=exc.code or "stripe_error")
        raise stripe_unavailable(exc) from exc
    TopUp.objects.filter(pk=top_up.pk).update(stripe_payment_intent_id=intent.id, updated_at=timezone.now())
    top_up.stripe_payment_intent_id = intent.id
    return TopUpStarted(top_up=top_up, payment_intent_client_secret=str(intent.client_secret))


def topup_pay(*, organization_id: int, top_up_id: int) -> TopUpCharged:
    """Charge the saved card, or (a new card) take note of what the browser's stripe.confirmCardPayment did.

    Raises PaymentDeclined (402, with Stripe's message) when the card is declined; returns the PaymentIntent's
    client secret when the bank asks for authentication. A repeated call (double click, retry) returns the state
    of the first one and never charges twice.
    """
    top_up = _top_up_of(organization_id=organization_id, top_up_id=top_up_id)
    if top_up.stripe_payment_intent_id:
        return _payment_intent_state(top_up)
    # The claim: only one request moves a pending top-up on; the others report what it did.
    claimed = TopUp.objects.filter(
        pk=top_up.pk, status=TopUp.Status.PENDING, stripe_payment_intent_id__isnull=True
    ).update(status=TopUp.Status.PROCESSING, updated_at=timezone.now())
    if not claimed:
        return _payment_intent_state(TopUp.objects.get(pk=top_up.pk))
    try:
        payment_intent = _saved_card_payment_intent_create(top_up=top_up)
    except ApplicationError:
        # Nothing was charged (Stripe could not be reached): the top-up may be paid again, with the same keys.
        TopUp.objects.filter(pk=top_up.pk, status=TopUp.Status.PROCESSING).update(
            status=TopUp.Status.PENDING, updated_at=timezone.now()
        )
        raise
    try:
        confirmed = stripe_client().v1.payment_intents.confirm(
            payment_intent.id, options=intent_options(idempotency_key=f"top-up-{top_up.pk}-confirm")
        )
    except stripe.CardError as exc:
        message = stripe_error_message(exc)
        topup_fail(top_up_id=top_up.pk, message=message, code=exc.code or "card_declined")
        raise PaymentDeclined(message, code=exc.code or "card_declined") from exc
    except stripe.StripeError as exc:
        # The outcome is unknown here; Stripe's webhook settles it either way (processing until then).
        logger.warning("top-up %s: confirming %s failed: %s", top_up.pk, payment_intent.id, exc)
        raise stripe_unavailable(exc) from exc
    return _confirmed(top_up_id=top_up.pk, payment_intent=confirmed)


def _saved_card_payment_intent_create(*, top_up: TopUp) -> stripe.PaymentIntent:
    customer_id = (
        StripeCustomer.objects.filter(organization_id=top_up.organization_id)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    if customer_id is None or not top_up.stripe_payment_method_id:
        raise ApplicationError("Enter a card to pay with.", param="card", code="no_saved_card")
    params: Any = {
        "amount": top_up.amount_cents,
        "currency": top_up.currency.lower(),
        "customer": customer_id,
        "payment_method": top_up.stripe_payment_method_id,
        "payment_method_types": ["card"],
        "metadata": top_up_metadata(top_up_id=top_up.pk, organization_id=top_up.organization_id, kind=top_up.kind),
    }
    try:
        payment_intent = stripe_client().v1.payment_intents.create(
            params=params, options=intent_options(idempotency_key=f"top-up-{top_up.pk}-payment-intent")
        )
    except stripe.StripeError as exc:
        logger.warning("top-up %s: PaymentIntent not created: %s", top_up.pk, exc)
        raise stripe_unavailable(exc) from exc
    TopUp.objects.filter(pk=top_up.pk).update(stripe_payment_intent_id=payment_intent.id, updated_at=timezone.now())
    return payment_intent


def _confirmed(*, top_up_id: int, payment_intent: stripe.PaymentIntent) -> TopUpCharged:
    """Record what confirming the PaymentIntent answered (never success: that is the webhook's word)."""
    status = payment_intent.status
    if status == "requires_action":
        TopUp.objects.filter(pk=top_up_id, status__in=[TopUp.Status.PENDING, TopUp.Status.PROCESSING]).update(
            status=TopUp.Status.REQUIRES_ACTION, updated_at=timezone.now()
        )
        return TopUpCharged(TopUp.objects.get(pk=top_up_id), str(payment_intent.client_secret))
    if status in ("succeeded", "processing", "requires_capture"):
        TopUp.objects.filter(pk=top_up_id, status__in=[TopUp.Status.PENDING, TopUp.Status.REQUIRES_ACTION]).update(
            status=TopUp.Status.PROCESSING, updated_at=timezone.now()
        )
        return TopUpCharged(TopUp.objects.get(pk=top_up_id))
    message, code = payment_error(payment_intent)
    topup_fail(top_up_id=top_up_id, message=message, code=code)
    raise PaymentDeclined(message, code=code)


def payment_error(payment_intent: stripe.PaymentIntent | dict[str, Any]) -> tuple[str, str]:
    """Stripe's message and code for a PaymentIntent that did not go through (an API object or a webhook's dict)."""
    data = payment_intent.to_dict() if isinstance(payment_intent, stripe.StripeObject) else payment_intent
    error = data.get("last_payment_error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]), str(error.get("code") or error.get("decline_code") or "payment_failed")
    if data.get("status") == "canceled":
        return "The payment was canceled.", "payment_canceled"
    return "The payment could not be completed.", "payment_failed"


def waits_for_card(payment_intent: stripe.PaymentIntent | dict[str, Any]) -> bool:
    """A new card's PaymentIntent the browser has not confirmed yet: it waits for a payment method, and no attempt
    failed (after a failed one, Stripe also goes back to waiting for a payment method, with the error kept)."""
    data = payment_intent.to_dict() if isinstance(payment_intent, stripe.StripeObject) else payment_intent
    return data.get("status") == "requires_payment_method" and not data.get("last_payment_error")


def _payment_intent_state(top_up: TopUp) -> TopUpCharged:
    """A top-up whose PaymentIntent exists: what Stripe says of it now, recorded (never success: the webhook's word).

    For a new card this is the step after the browser's stripe.confirmCardPayment: the card it confirmed is taken
    note of on the top-up and kept as the organization's saved card."""
    if top_up.status == TopUp.Status.FAILED:
        raise PaymentDeclined(top_up.failure_message or "The payment failed.", code=top_up.failure_code or None)
    if not top_up.stripe_payment_intent_id:
        # Another request claimed the saved card's charge and is making it: its answer is the one that counts.
        return TopUpCharged(top_up)
    try:
        intent = stripe_client().v1.payment_intents.retrieve(top_up.stripe_payment_intent_id)
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    charged = intent.status in ("succeeded", "processing", "requires_capture")
    if charged and not top_up.stripe_payment_method_id and intent.payment_method:
        # Also when the webhook already credited it: Stripe does not promise which comes first.
        _new_card_note(top_up=top_up, payment_method_id=str(intent.payment_method))
    if top_up.status == TopUp.Status.SUCCEEDED:
        return TopUpCharged(TopUp.objects.get(pk=top_up.pk))
    if waits_for_card(intent) or intent.status == "requires_confirmation":
        raise ApplicationError(
            "The card has not been confirmed yet. Enter the card details and try again.",
            param="card",
            code="card_not_confirmed",
        )
    return _confirmed(top_up_id=top_up.pk, payment_intent=intent)


def _new_card_note(*, top_up: TopUp, payment_method_id: str) -> None:
    """The card the browser paid with: on the top-up (its receipt names it), and kept as the saved card. The payment
    went through whatever happens here: if Stripe cannot be asked for the card now, that is logged, not raised
    (the credit still comes with the webhook; the card can be saved on the Payment methods page)."""
    try:
        card = saved_card_keep(organization_id=top_up.organization_id, payment_method_id=payment_method_id, actor=None)
    except PaymentsUnavailable as exc:
        logger.warning("top-up %s: card %s not kept: %s", top_up.pk, payment_method_id, exc)
        return
    TopUp.objects.filter(pk=top_up.pk, stripe_payment_method_id="").update(
        stripe_payment_method_id=payment_method_id, card_last4=card.card_last4, updated_at=timezone.now()
    )


def topup_sync(*, organization_id: int, top_up_id: int) -> TopUp:
    """Ask Stripe how a top-up's PaymentIntent stands, after the browser's card or authentication step did not
    finish: the attempt ends here, with Stripe's reason (the page starts a new one on the next try).

    Only a failure is recorded from this answer; credit is still granted only by the webhook.
    """
    top_up = _top_up_of(organization_id=organization_id, top_up_id=top_up_id)
    if not top_up.in_flight:
        return top_up
    if not top_up.stripe_payment_intent_id:
        _fail_unconfirmed(top_up)
        return TopUp.objects.get(pk=top_up.pk)
    try:
        intent = stripe_client().v1.payment_intents.retrieve(top_up.stripe_payment_intent_id)
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    if waits_for_card(intent):
        topup_fail(top_up_id=top_up.pk, message=CARD_NOT_CONFIRMED[0], code=CARD_NOT_CONFIRMED[1])
    elif intent.status in ("requires_payment_method", "canceled"):
        message, code = payment_error(intent)
        topup_fail(top_up_id=top_up.pk, message=message, code=code)
    return TopUp.objects.get(pk=top_up.pk)


def _fail_unconfirmed(top_up: TopUp) -> None:
    """A saved-card top-up never charged (the page was left before the pay step): nothing can be charged any more."""
    with transaction.atomic():
        failed = TopUp.objects.filter(
            pk=top_up.pk, status=TopUp.Status.PENDING, stripe_payment_intent_id__isnull=True
        ).update(
            status=TopUp.Status.FAILED,
            failure_message=CARD_NOT_CONFIRMED[0],
            failure_code=CARD_NOT_CONFIRMED[1],
            updated_at=timezone.now(),
        )
        if failed:
            topup_event_emit(top_up=TopUp.objects.get(pk=top_up.pk), event_type=EventType.TOP_UP_FAILED)


def topup_fail(*, top_up_id: int, message: str, code: str, payment_intent_id: str | None = None) -> bool:
    """Mark an in-flight top-up failed with Stripe's reason. Returns whether this call made the change (so the
    caller reacts once: auto top-up is turned off and the owner told only on the transition)."""
    changes: dict[str, Any] = {
        "status": TopUp.Status.FAILED,
        "failure_message": message[:2000],
        "failure_code": code[:100],
        "updated_at": timezone.now(),
    }
    if payment_intent_id:
        changes["stripe_payment_intent_id"] = payment_intent_id
    in_flight = TopUp.objects.filter(pk=top_up_id, status__in=TopUp.IN_FLIGHT)
    if payment_intent_id:
        in_flight = in_flight.filter(
            Q(stripe_payment_intent_id__isnull=True) | Q(stripe_payment_intent_id=payment_intent_id)
        )
    with transaction.atomic():
        failed = bool(in_flight.update(**changes))
        top_up = TopUp.objects.get(pk=top_up_id) if failed else None
        # An automatic top-up's failure is announced as auto_top_up.failed (by auto_topup_failed).
        if top_up is not None and top_up.kind == TopUp.Kind.MANUAL:
            topup_event_emit(top_up=top_up, event_type=EventType.TOP_UP_FAILED)
    return failed


def topup_for_payment_intent(payment_intent: dict[str, Any], *, lock: bool = True) -> TopUp | None:
    """The top-up a PaymentIntent (from a webhook) pays for: by its id, or by the metadata we put on it (an automatic
    charge's webhook can arrive before its id is stored). None when it is not ours."""
    pi_id = payment_intent.get("id")
    queryset = TopUp.objects.select_for_update() if lock else TopUp.objects.all()
    metadata = payment_intent.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    raw_id, raw_org = metadata.get("top_up_id"), metadata.get("organization_id")
    top_up = queryset.filter(stripe_payment_intent_id=pi_id).first() if isinstance(pi_id, str) else None
    if top_up is not None:
        # Every PaymentIntent we create names its top-up and organization; one that names others is not this
        # top-up's payment (whatever its id says), so it fails and is kept for inspection rather than credited.
        if (raw_id, raw_org) != (str(top_up.pk), str(top_up.organization_id)):
            raise LookupError(
                f"PaymentIntent {pi_id} pays top-up {top_up.pk} of organization {top_up.organization_id}, "
                f"but its metadata names top-up {raw_id!r} of organization {raw_org!r}"
            )
        return top_up
    if not (isinstance(raw_id, str) and is_id_text(raw_id) and isinstance(raw_org, str) and is_id_text(raw_org)):
        return None
    top_up = queryset.filter(pk=int(raw_id), organization_id=int(raw_org)).first()
    if top_up is None:
        # Our metadata, but no such top-up: never silently drop money; the event fails and is retried/inspected.
        raise LookupError(f"PaymentIntent {pi_id} names top-up {raw_id}, which does not exist")
    if top_up.stripe_payment_intent_id and top_up.stripe_payment_intent_id != pi_id:
        raise LookupError(
            f"PaymentIntent {pi_id} names top-up {raw_id}, which is paid by {top_up.stripe_payment_intent_id}"
        )
    return top_up


def topup_paid(*, payment_intent: dict[str, Any]) -> TopUp | None:
    """Stripe says the PaymentIntent succeeded: grant the credit, once, and mark the top-up paid.

    Runs inside the webhook event's transaction. The grant's idempotency key is derived from the PaymentIntent, so
    even a second path to this function (another event for the same payment) cannot grant twice. A top-up marked
    failed is still paid here: what Stripe says about money wins.
    """
    top_up = topup_for_payment_intent(payment_intent)
    if top_up is None:
        return None
    if top_up.status == TopUp.Status.SUCCEEDED:
        return top_up
    pi_id = str(payment_intent["id"])
    amount, currency = payment_intent.get("amount"), str(payment_intent.get("currency") or "").upper()
    if amount != top_up.amount_cents or currency != top_up.currency.upper():
        raise ValueError(
            f"PaymentIntent {pi_id} is for {amount} {currency} cents, top-up {top_up.pk} for "
            f"{top_up.amount_cents} {top_up.currency}"
        )
    label = "Auto top-up" if top_up.kind == TopUp.Kind.AUTO else "Top-up"
    result = ledger.grant_create(
        organization_id=top_up.organization_id,
        kind="paid",
        amount_nano=top_up.amount_nano,
        idempotency_key=f"stripe-payment-intent-{pi_id}",
        actor="stripe",
        reason=f"{label} {top_up.receipt_number}"
        + (f" (card ending {top_up.card_last4})" if top_up.card_last4 else ""),
        source_ref=pi_id,
    )
    top_up.status = TopUp.Status.SUCCEEDED
    top_up.grant_id = result.grant.pk
    top_up.succeeded_at = timezone.now()
    top_up.stripe_payment_intent_id = pi_id
    top_up.failure_message = ""
    top_up.failure_code = ""
    top_up.save(
        update_fields=[
            "status",
            "grant_id",
            "succeeded_at",
            "stripe_payment_intent_id",
            "failure_message",
            "failure_code",
            "updated_at",
        ]
    )
    # Invoicing keeps the emails sent once per billing event (imported here: invoicing imports this package).
    from billing.invoicing.models import BillingEmailKind
    from billing.invoicing.services.emails import billing_email_queue

    billing_email_queue(
        organization_id=top_up.organization_id, kind=BillingEmailKind.TOP_UP_RECEIPT, object_id=top_up.pk
    )
    topup_event_emit(top_up=top_up, event_type=EventType.TOP_UP_SUCCEEDED)
    return top_up
