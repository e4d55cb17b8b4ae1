"""Auto top-up: when a debit takes available credit below the organization's threshold, charge its saved card.

The trigger (auto_topup_trigger.py) runs after every debit and, below the threshold, enqueues a Celery task
(debounced per organization); the settings and the saved card are in auto_topup_config.py. The task:

1. claims the charge in one transaction under the AutoTopUp row lock: still enabled, still below the threshold,
   within the daily cap, and no other automatic charge in flight (a partial unique constraint guarantees the last
   one even without the lock);
2. creates and confirms an off-session PaymentIntent with an idempotency key derived from the top-up id;
3. on a decline, marks the top-up failed, turns auto top-up off and emails the people who manage billing.

Credit still arrives only with the `payment_intent.succeeded` webhook, like every top-up.
"""

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.services import audit_record
from billing.ledger import selectors as ledger_selectors
from billing.payments.errors import PaymentsUnavailable
from billing.payments.models import AutoTopUp, StripeCustomer, TopUp
from billing.payments.services.auto_topup_trigger import auto_topup_settled, trigger_changed
from billing.payments.services.common import (
    error_payment_intent_id,
    top_up_metadata,
)
from billing.payments.services.events import topup_event_emit
from billing.payments.services.topups import payment_error, topup_fail
from billing.payments.stripe_client import (
    intent_options,
    stripe_client,
    stripe_error_is_transient,
    stripe_error_message,
)
from billing.webhooks.models import EventType
from core.money import money_display

logger = logging.getLogger(__name__)

# An automatic charge being sent to Stripe is its sender's for this long (longer than the Stripe client's own
# timeouts and retries); after that, the task's retry or the sweeper may send it again, with the same key.
SEND_LEASE_SECONDS = 300

AUTHENTICATION_REQUIRED_MESSAGE = (
    "Your bank asked to authenticate this payment, which cannot be done automatically. "
    "Top up once by hand, then turn auto top-up on again."
)


def auto_topup_spent_today(*, organization_id: int, now: datetime | None = None) -> int:
    """What automatic charges took (or are taking) today, UTC: counted against the daily cap. Failed ones took
    nothing."""
    now = now or timezone.now()
    start = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    total = (
        TopUp.objects.filter(organization_id=organization_id, kind=TopUp.Kind.AUTO, created_at__gte=start)
        .exclude(status=TopUp.Status.FAILED)
        .aggregate(total=Sum("amount_nano"))["total"]
    )
    return int(total or 0)


def auto_topup_over_cap(*, config: AutoTopUp, spent_today_nano: int) -> bool:
    """Whether one more charge of the configured amount would take today's automatic charges over the daily cap."""
    return spent_today_nano + config.amount_nano > config.daily_cap_nano


def _claim(*, organization_id: int) -> TopUp | None:
    """Decide, under the AutoTopUp row lock, whether to charge now; returns the top-up to send, if any."""
    with transaction.atomic(durable=True):
        config = AutoTopUp.objects.select_for_update().filter(organization_id=organization_id).first()
        if config is None or not config.enabled:
            return None
        in_flight = TopUp.objects.filter(
            organization_id=organization_id, kind=TopUp.Kind.AUTO, status__in=TopUp.IN_FLIGHT
        ).first()
        if in_flight is not None:
            # One automatic charge at a time. One that never got Stripe's answer (a crash, an outage) is sent again,
            # once its sender's lease ran out.
            return in_flight if _send_lease(top_up_id=in_flight.pk) else None
        balance = ledger_selectors.wallet_balance(organization_id=organization_id)
        if balance.available_nano >= config.threshold_nano:
            return None
        if auto_topup_over_cap(config=config, spent_today_nano=auto_topup_spent_today(organization_id=organization_id)):
            logger.info("auto top-up of organization %s skipped: daily cap reached", organization_id)
            return None
        try:
            with transaction.atomic():
                return TopUp.objects.create(
                    organization_id=organization_id,
                    kind=TopUp.Kind.AUTO,
                    status=TopUp.Status.PROCESSING,
                    amount_nano=config.amount_nano,
                    currency=balance.currency,
                    stripe_payment_method_id=config.stripe_payment_method_id,
                    card_last4=config.card_last4,
                )
        except IntegrityError:  # another automatic charge got in first (the partial unique constraint)
            return None


def _send_lease(*, top_up_id: int) -> bool:
    """Take over sending an automatic charge that has no PaymentIntent yet, if nobody touched it for
    SEND_LEASE_SECONDS (its sender crashed, or Stripe did not answer). One conditional UPDATE: one taker at a time.

    The idempotency key already makes a second send return the same PaymentIntent at Stripe; the lease keeps
    two senders from racing each other in the first place.
    """
    now = timezone.now()
    return bool(
        TopUp.objects.filter(
            pk=top_up_id,
            kind=TopUp.Kind.AUTO,
            status__in=TopUp.IN_FLIGHT,
            stripe_payment_intent_id__isnull=True,
            updated_at__lte=now - timedelta(seconds=SEND_LEASE_SECONDS),
        ).update(updated_at=now)
    )


def auto_topup_charge(*, organization_id: int) -> TopUp | None:
    """The task's work: claim an automatic charge if one is due, and send it to Stripe."""
    top_up = _claim(organization_id=organization_id)
    if top_up is None:
        return None
    return auto_topup_send(top_up_id=top_up.pk)


def auto_topup_send(*, top_up_id: int) -> TopUp:
    """Create and confirm the off-session PaymentIntent of an automatic top-up that has none yet.

    Raises PaymentsUnavailable when Stripe gave no definite answer: the caller retries later with the same
    idempotency key, so Stripe returns the PaymentIntent it may already have created instead of charging twice.
    """
    top_up = TopUp.objects.get(pk=top_up_id, kind=TopUp.Kind.AUTO)
    if not top_up.in_flight or top_up.stripe_payment_intent_id:
        return top_up
    customer_id = StripeCustomer.objects.filter(organization_id=top_up.organization_id).values_list(
        "stripe_customer_id", flat=True
    )
    try:
        params: Any = {
            "amount": top_up.amount_cents,
            "currency": top_up.currency.lower(),
            "customer": customer_id.get(),
            "payment_method": top_up.stripe_payment_method_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": top_up_metadata(top_up_id=top_up.pk, organization_id=top_up.organization_id, kind=top_up.kind),
        }
        intent = stripe_client().v1.payment_intents.create(
            params=params, options=intent_options(idempotency_key=f"top-up-{top_up.pk}-payment-intent")
        )
    except stripe.CardError as exc:
        auto_topup_failed(
            top_up_id=top_up.pk,
            message=stripe_error_message(exc),
            code=exc.code or "card_declined",
            payment_intent_id=error_payment_intent_id(exc),
        )
        return TopUp.objects.get(pk=top_up.pk)
    except stripe.StripeError as exc:
        if stripe_error_is_transient(exc):
            logger.warning("auto top-up %s: no answer from Stripe, will retry: %s", top_up.pk, exc)
            raise PaymentsUnavailable(stripe_error_message(exc)) from exc
        logger.error("auto top-up %s refused by Stripe: %s", top_up.pk, exc)
        auto_topup_failed(
            top_up_id=top_up.pk,
            message="The saved card could not be charged. Save the card again, then turn auto top-up on.",
            code=exc.code or "stripe_error",
            payment_intent_id=error_payment_intent_id(exc),
        )
        return TopUp.objects.get(pk=top_up.pk)
    TopUp.objects.filter(pk=top_up.pk, stripe_payment_intent_id__isnull=True).update(
        stripe_payment_intent_id=intent.id, updated_at=timezone.now()
    )
    if intent.status in ("succeeded", "processing"):
        return TopUp.objects.get(pk=top_up.pk)
    if intent.status == "requires_action":
        # The customer is not there to authenticate: give the PaymentIntent up rather than leave it open.
        try:
            stripe_client().v1.payment_intents.cancel(
                intent.id, options=intent_options(idempotency_key=f"top-up-{top_up.pk}-cancel")
            )
        except stripe.StripeError as exc:
            logger.warning("auto top-up %s: cancelling %s failed: %s", top_up.pk, intent.id, exc)
        auto_topup_failed(
            top_up_id=top_up.pk,
            message=AUTHENTICATION_REQUIRED_MESSAGE,
            code="authentication_required",
            payment_intent_id=intent.id,
        )
    else:
        message, code = payment_error(intent)
        auto_topup_failed(top_up_id=top_up.pk, message=message, code=code, payment_intent_id=intent.id)
    return TopUp.objects.get(pk=top_up.pk)


def auto_topup_failed(*, top_up_id: int, message: str, code: str, payment_intent_id: str | None = None) -> bool:
    """An automatic charge failed: record why, turn auto top-up off, and tell the people who manage billing.

    Whichever path sees the failure first (the charge's answer or the `payment_failed` webhook) does this; the
    other finds the top-up already failed and does nothing, so the owner gets one email.
    """
    with transaction.atomic():
        if not topup_fail(top_up_id=top_up_id, message=message, code=code, payment_intent_id=payment_intent_id):
            return False
        top_up = TopUp.objects.get(pk=top_up_id)
        auto_topup_disable(organization_id=top_up.organization_id, reason=message)
        auto_topup_settled(top_up=top_up)
        topup_event_emit(top_up=top_up, event_type=EventType.AUTO_TOP_UP_FAILED)
        transaction.on_commit(lambda: _notify_later(top_up_id))
    return True


def _notify_later(top_up_id: int) -> None:
    from billing.payments.tasks import auto_topup_failure_notify_task

    auto_topup_failure_notify_task.delay(top_up_id)


def auto_topup_disable(*, organization_id: int, reason: str) -> bool:
    """Turn auto top-up off on the system's initiative, keeping the reason for the page. Returns whether it was on."""
    turned_off = AutoTopUp.objects.filter(organization_id=organization_id, enabled=True).update(
        enabled=False, disabled_reason=reason[:2000], disabled_at=timezone.now(), updated_at=timezone.now()
    )
    if turned_off:
        audit_record(
            actor=None,
            action="auto_top_up.disable",
            organization_id=organization_id,
            target=f"Organization:{organization_id}",
            reason=reason,
        )
        trigger_changed(organization_id, check_now=False)
    return bool(turned_off)


def billing_contacts(*, organization_id: int) -> list[str]:
    """Email addresses of the people who can act on a payment problem: owners and billing admins."""
    emails = (
        Membership.objects.filter(organization_id=organization_id, role__in=[Role.OWNER, Role.BILLING_ADMIN])
        .exclude(user__email="")
        .order_by("created_at")
        .values_list("user__email", flat=True)
    )
    return list(dict.fromkeys(emails))


def auto_topup_failure_notify(*, top_up_id: int) -> int:
    """Email owners and billing admins that an automatic charge failed and auto top-up is off. Returns the number
    of recipients."""
    top_up = TopUp.objects.select_related("organization").get(pk=top_up_id)
    recipients = billing_contacts(organization_id=top_up.organization_id)
    if not recipients:
        return 0
    context: dict[str, Any] = {
        "organization": top_up.organization,
        "top_up": top_up,
        "amount": money_display(top_up.amount_nano, top_up.currency),
        "page_url": settings.SITE_URL.rstrip("/") + "/billing/auto-top-up/",
    }
    send_mail(
        subject=f"Auto top-up failed and was turned off for {top_up.organization.name}",
        message=render_to_string("billing/email/auto_top_up_failed.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )
    return len(recipients)


def auto_topups_resume(*, limit: int = 100) -> int:
    """The sweeper: send again automatic charges that were claimed but never got an answer from Stripe, once their
    sender's lease ran out.

    Stripe keeps idempotency keys for 24 hours, so within that window a resend returns the PaymentIntent Stripe
    may already have created; past it, the charge is given up as failed rather than risk a second one.
    """
    now = timezone.now()
    stuck = TopUp.objects.filter(
        kind=TopUp.Kind.AUTO,
        status__in=TopUp.IN_FLIGHT,
        stripe_payment_intent_id__isnull=True,
        updated_at__lte=now - timedelta(seconds=SEND_LEASE_SECONDS),
    ).order_by("created_at")[:limit]
    resent = 0
    for top_up in stuck:
        if top_up.created_at < now - timedelta(hours=23):
            auto_topup_failed(
                top_up_id=top_up.pk,
                message="The automatic charge could not be sent to the payment service.",
                code="not_sent",
            )
            continue
        if not _send_lease(top_up_id=top_up.pk):
            continue
        try:
            auto_topup_send(top_up_id=top_up.pk)
            resent += 1
        except PaymentsUnavailable:
            break  # still no answer from Stripe: try the rest next time
    return resent
