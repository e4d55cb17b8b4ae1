"""Auto top-up: when a debit takes available credit below the organization's threshold, charge its saved card.

The trigger is `auto_topup_check`, called by whoever just moved money out of the wallet (the gateway after each
settle, services after a debit). It must be cheap: it reads two numbers from a two-layer cache (process memory for
LOCAL_CACHE_SECONDS, then Django's cache for CACHE_SECONDS) and returns at once when the balance is above the
threshold. Below it, a Celery task is enqueued after commit (debounced per organization), and the task:

1. claims the charge in one transaction under the AutoTopUp row lock: still enabled, still below the threshold,
   within the daily cap, and no other automatic charge in flight (a partial unique constraint guarantees the last
   one even without the lock);
2. creates and confirms an off-session PaymentIntent with an idempotency key derived from the top-up id;
3. on a decline, marks the top-up failed, turns auto top-up off and emails the people who manage billing.

Credit still arrives only with the `payment_intent.succeeded` webhook, like every top-up.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import stripe
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Membership, Organization, Role
from accounts.services import audit_record
from api.errors import ApplicationError
from billing.ledger import selectors as ledger_selectors
from billing.money import MAX_AMOUNT_NANO, format_amount
from billing.payments.errors import NotFound, PaymentsUnavailable
from billing.payments.models import AutoTopUp, StripeCustomer, TopUp
from billing.payments.services.common import (
    error_payment_intent_id,
    stripe_id_clean,
    stripe_unavailable,
    top_up_metadata,
    topup_bounds_check,
)
from billing.payments.services.customers import with_stripe_customer
from billing.payments.services.topups import payment_error, topup_fail
from billing.payments.stripe_client import (
    intent_options,
    stripe_client,
    stripe_error_is_transient,
    stripe_error_message,
)

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None

CACHE_SECONDS = 300
LOCAL_CACHE_SECONDS = 5
# After a charge is enqueued, further checks of the organization enqueue nothing for this long (the charge clears
# it when it ends, so a wallet that drains again right after a top-up is noticed at once).
QUEUE_DEBOUNCE_SECONDS = 15
# An automatic charge being sent to Stripe is its sender's for this long (longer than the Stripe client's own
# timeouts and retries); after that, the task's retry or the sweeper may send it again, with the same key.
SEND_LEASE_SECONDS = 300
_local = LocMemCache("payments-auto-topup", {"TIMEOUT": LOCAL_CACHE_SECONDS, "OPTIONS": {"MAX_ENTRIES": 10_000}})

AUTHENTICATION_REQUIRED_MESSAGE = (
    "Your bank asked to authenticate this payment, which cannot be done automatically. "
    "Top up once by hand, then turn auto top-up on again."
)


@dataclass(frozen=True, slots=True)
class Trigger:
    enabled: bool
    threshold_nano: int


_OFF = Trigger(False, 0)


def _trigger_key(organization_id: int) -> str:
    return f"payments:auto-topup:trigger:{organization_id}"


def _queued_key(organization_id: int) -> str:
    return f"payments:auto-topup:queued:{organization_id}"


def _trigger_load(organization_id: int) -> Trigger:
    row = AutoTopUp.objects.filter(organization_id=organization_id).values_list("enabled", "threshold_nano").first()
    return Trigger(*row) if row else _OFF


def auto_topup_cache_clear(*, organization_id: int | None = None) -> None:
    """Forget cached triggers: one organization's (after a change; other processes follow within seconds), or all."""
    if organization_id is None:
        _local.clear()
        return
    _local.delete(_trigger_key(organization_id))
    cache.delete_many([_trigger_key(organization_id), _queued_key(organization_id)])


def _trigger(organization_id: int) -> Trigger:
    key = _trigger_key(organization_id)
    trigger = _local.get(key)
    if trigger is None:
        trigger = cache.get(key)
        if trigger is None:
            trigger = _trigger_load(organization_id)
            cache.set(key, trigger, CACHE_SECONDS)
        _local.set(key, trigger)
    return trigger


def _enqueue(organization_id: int) -> None:
    from billing.payments.tasks import auto_topup_charge_task

    if cache.add(_queued_key(organization_id), 1, timeout=QUEUE_DEBOUNCE_SECONDS):
        auto_topup_charge_task.delay(organization_id)


def auto_topup_check(*, organization_id: int, available_nano: int) -> None:
    """Called after a debit with the wallet's new available credit: start an automatic charge when it is below the
    organization's threshold. Returns at once otherwise; the charge is enqueued after the caller's commit."""
    trigger = _trigger(organization_id)
    if not trigger.enabled or available_nano >= trigger.threshold_nano:
        return
    transaction.on_commit(lambda: _enqueue(organization_id))


async def aauto_topup_check(*, organization_id: int, available_nano: int) -> None:
    """`auto_topup_check` for async callers (the gateway), to be awaited after their settle committed."""
    key = _trigger_key(organization_id)
    trigger = _local.get(key)
    if trigger is None:
        trigger = await cache.aget(key)
        if trigger is None:
            trigger = await sync_to_async(_trigger_load)(organization_id)
            await cache.aset(key, trigger, CACHE_SECONDS)
        _local.set(key, trigger)
    if not trigger.enabled or available_nano >= trigger.threshold_nano:
        return
    if await cache.aadd(_queued_key(organization_id), 1, timeout=QUEUE_DEBOUNCE_SECONDS):
        from billing.payments.tasks import auto_topup_charge_task

        # Publishing to the broker is blocking I/O: keep it off the event loop. Through sync_to_async, not a bare
        # thread, so that a task run eagerly (tests, CELERY_TASK_ALWAYS_EAGER) uses a connection Django manages.
        await sync_to_async(auto_topup_charge_task.delay)(organization_id)


def _after_change(organization_id: int, *, check_now: bool) -> None:
    """After commit: forget cached triggers and, when enabled, look at the balance at once (a wallet that already
    sits below the threshold sees no more debits: its requests are refused for lack of credit)."""

    def run() -> None:
        auto_topup_cache_clear(organization_id=organization_id)
        if check_now:
            balance = ledger_selectors.wallet_balance(organization_id=organization_id)
            auto_topup_check(organization_id=organization_id, available_nano=balance.available_nano)

    transaction.on_commit(run)


def _locked_config(organization_id: int) -> AutoTopUp:
    if not Organization.objects.filter(pk=organization_id).exists():
        raise NotFound("organization not found", param="organization_id")
    AutoTopUp.objects.get_or_create(organization_id=organization_id)
    return AutoTopUp.objects.select_for_update().get(organization_id=organization_id)


@transaction.atomic
def auto_topup_update(
    *,
    organization_id: int,
    enabled: bool,
    threshold_nano: int,
    amount_nano: int,
    daily_cap_nano: int,
    actor: Actor,
) -> AutoTopUp:
    """Change the settings. Turning auto top-up on needs a saved card, an amount within the top-up bounds and a
    daily cap of at least one amount."""
    currency = Organization.objects.filter(pk=organization_id).values_list("currency", flat=True).first() or "USD"
    for param, value in (("threshold", threshold_nano), ("amount", amount_nano), ("daily_cap", daily_cap_nano)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT_NANO:
            raise ApplicationError(
                f"{param} must be an amount between 0 and {format_amount(MAX_AMOUNT_NANO)}", param=param
            )
    config = _locked_config(organization_id)
    if enabled:
        topup_bounds_check(amount_nano, currency=currency, param="amount")
        if daily_cap_nano < amount_nano:
            raise ApplicationError(
                "daily_cap must be at least the amount of one top-up", param="daily_cap", code="cap_below_amount"
            )
        if not config.stripe_payment_method_id:
            raise ApplicationError("Save a card before turning auto top-up on.", param="enabled", code="no_saved_card")
    before = {
        "enabled": config.enabled,
        "threshold": format_amount(config.threshold_nano),
        "amount": format_amount(config.amount_nano),
        "daily_cap": format_amount(config.daily_cap_nano),
    }
    config.enabled = enabled
    config.threshold_nano = threshold_nano
    config.amount_nano = amount_nano
    config.daily_cap_nano = daily_cap_nano
    if enabled:
        config.disabled_reason = ""
        config.disabled_at = None
    config.updated_by_id = actor.pk if isinstance(actor, AbstractBaseUser) else None
    config.save()
    after = {
        "enabled": enabled,
        "threshold": format_amount(threshold_nano),
        "amount": format_amount(amount_nano),
        "daily_cap": format_amount(daily_cap_nano),
    }
    audit_record(
        actor=actor,
        action="auto_top_up.update",
        organization_id=organization_id,
        target=f"AutoTopUp:{config.pk}",
        detail={"before": before, "after": after},
    )
    _after_change(organization_id, check_now=enabled)
    return config


def auto_topup_card_start(*, organization_id: int, actor: Actor) -> str:
    """Open a SetupIntent that saves a card for off-session charges; returns its client secret for the browser."""
    with transaction.atomic():
        config = _locked_config(organization_id)
        config.card_setups += 1
        config.save(update_fields=["card_setups", "updated_at"])
        setup_number = config.card_setups

    def setup_intent(customer_id: str) -> stripe.SetupIntent:
        params: Any = {
            "customer": customer_id,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": {"organization_id": str(organization_id), "purpose": "auto_top_up"},
        }
        return stripe_client().v1.setup_intents.create(
            params=params,
            options=intent_options(idempotency_key=f"organization-{organization_id}-auto-top-up-card-{setup_number}"),
        )

    try:
        intent = with_stripe_customer(organization_id=organization_id, call=setup_intent)
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    AutoTopUp.objects.filter(organization_id=organization_id).update(
        stripe_setup_intent_id=intent.id, updated_at=timezone.now()
    )
    return str(intent.client_secret)


def auto_topup_card_save(*, organization_id: int, setup_intent_id: object, actor: Actor) -> AutoTopUp:
    """Keep the card the browser confirmed with the organization's latest auto top-up SetupIntent.

    The server asks Stripe itself whether the SetupIntent succeeded and for whom; the browser only names it.
    """
    setup_intent_id = stripe_id_clean(setup_intent_id, param="setup_intent_id", prefix="seti_")
    config = AutoTopUp.objects.filter(organization_id=organization_id).first()
    if config is None or config.stripe_setup_intent_id != setup_intent_id:
        raise NotFound("no card set-up with this id; start again", param="setup_intent_id")
    customer_id = StripeCustomer.objects.filter(organization_id=organization_id).values_list(
        "stripe_customer_id", flat=True
    )
    try:
        intent = stripe_client().v1.setup_intents.retrieve(setup_intent_id)
        if intent.customer != customer_id.first():
            raise NotFound("no card set-up with this id; start again", param="setup_intent_id")
        if intent.status != "succeeded" or not intent.payment_method:
            raise ApplicationError(
                "The card has not been confirmed yet. Enter the card details and try again.",
                param="setup_intent_id",
                code="card_not_confirmed",
            )
        payment_method = stripe_client().v1.payment_methods.retrieve(str(intent.payment_method))
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    last4 = (payment_method.card.last4 if payment_method.card is not None else "")[:4]
    with transaction.atomic():
        config = _locked_config(organization_id)
        if config.stripe_setup_intent_id != setup_intent_id:
            raise NotFound("no card set-up with this id; start again", param="setup_intent_id")
        config.stripe_payment_method_id = payment_method.id
        config.card_last4 = last4
        config.save(update_fields=["stripe_payment_method_id", "card_last4", "updated_at"])
        audit_record(
            actor=actor,
            action="auto_top_up.card_save",
            organization_id=organization_id,
            target=f"AutoTopUp:{config.pk}",
            detail={"card_last4": last4},
        )
    return config


@transaction.atomic
def auto_topup_card_remove(*, organization_id: int, actor: Actor) -> AutoTopUp:
    """Forget the saved card; auto top-up turns off with it."""
    config = _locked_config(organization_id)
    config.stripe_payment_method_id = ""
    config.card_last4 = ""
    config.enabled = False
    config.save(update_fields=["stripe_payment_method_id", "card_last4", "enabled", "updated_at"])
    audit_record(
        actor=actor, action="auto_top_up.card_remove", organization_id=organization_id, target=f"AutoTopUp:{config.pk}"
    )
    _after_change(organization_id, check_now=False)
    return config


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
        if auto_topup_spent_today(organization_id=organization_id) + config.amount_nano > config.daily_cap_nano:
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
        _after_change(organization_id, check_now=False)
    return bool(turned_off)


def auto_topup_settled(*, top_up: TopUp) -> None:
    """An automatic charge ended (paid or failed): the next check may enqueue again straight away."""
    if top_up.kind == TopUp.Kind.AUTO:
        organization_id = top_up.organization_id
        transaction.on_commit(lambda: cache.delete(_queued_key(organization_id)))


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
        "amount": format_amount(top_up.amount_nano),
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
