"""Auto top-up's settings, changed by the people who manage billing: the threshold, amount and daily cap, and the
saved card (a SetupIntent confirmed in the browser, then kept for off-session charges; see services.cards)."""

from typing import Any

import stripe
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from billing.payments.errors import NotFound
from billing.payments.models import AutoTopUp, StripeCustomer
from billing.payments.services.auto_topup_trigger import trigger_changed
from billing.payments.services.cards import saved_card_keep, saved_card_locked
from billing.payments.services.common import (
    stripe_id_clean,
    stripe_unavailable,
    topup_bounds_check,
)
from billing.payments.services.customers import with_stripe_customer
from billing.payments.stripe_client import (
    intent_options,
    stripe_client,
)
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, format_amount

Actor = AbstractBaseUser | AnonymousUser | None


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
    config = saved_card_locked(organization_id)
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
    trigger_changed(organization_id, check_now=enabled)
    return config


def auto_topup_card_start(*, organization_id: int, actor: Actor) -> str:
    """Open a SetupIntent that saves a card for off-session charges; returns its client secret for the browser."""
    with transaction.atomic():
        config = saved_card_locked(organization_id)
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
    """Keep the card the browser confirmed with the organization's latest card SetupIntent as its saved card.

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
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    if intent.customer != customer_id.first():
        raise NotFound("no card set-up with this id; start again", param="setup_intent_id")
    if intent.status != "succeeded" or not intent.payment_method:
        raise ApplicationError(
            "The card has not been confirmed yet. Enter the card details and try again.",
            param="setup_intent_id",
            code="card_not_confirmed",
        )
    return saved_card_keep(organization_id=organization_id, payment_method_id=str(intent.payment_method), actor=actor)
