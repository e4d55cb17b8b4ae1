"""The organization's saved card: the one card auto top-up charges, a manual top-up may reuse, and Stripe charges
invoices to (the customer's `invoice_settings.default_payment_method`). It is kept on the AutoTopUp row.

A card becomes the saved card when it is added on its own (a SetupIntent confirmed in the browser) or paid a top-up
as a new card (a PaymentIntent with `setup_future_usage`). Removing it detaches it at Stripe and turns auto top-up
off. Stripe is called outside any database transaction.
"""

import logging
from dataclasses import dataclass

import stripe
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from accounts.models import Organization
from accounts.services import audit_record
from billing.payments.errors import NotFound
from billing.payments.models import AutoTopUp, StripeCustomer
from billing.payments.services.auto_topup_trigger import trigger_changed
from billing.payments.services.common import stripe_unavailable
from billing.payments.stripe_client import stripe_client

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None


def saved_card_locked(organization_id: int) -> AutoTopUp:
    """The row that holds the saved card (and auto top-up's settings), created if need be, locked."""
    if not Organization.objects.filter(pk=organization_id).exists():
        raise NotFound("organization not found", param="organization_id")
    AutoTopUp.objects.get_or_create(organization_id=organization_id)
    return AutoTopUp.objects.select_for_update().get(organization_id=organization_id)


def _customer_id(organization_id: int) -> str | None:
    return (
        StripeCustomer.objects.filter(organization_id=organization_id)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )


def _invoice_default_set(*, organization_id: int, payment_method_id: str) -> None:
    """Make Stripe charge the customer's invoices to this card ("" clears it). A failure is logged, not raised: the
    card is kept either way, and invoices name the saved card when they are created and paid."""
    customer_id = _customer_id(organization_id)
    if customer_id is None:
        return
    try:
        stripe_client().v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": payment_method_id}}
        )
    except stripe.StripeError as exc:
        logger.warning("organization %s: invoice default card not set at Stripe: %s", organization_id, exc)


def saved_card_keep(*, organization_id: int, payment_method_id: str, actor: Actor) -> AutoTopUp:
    """Make a card Stripe confirmed for this organization its saved card (replacing the one before)."""
    try:
        payment_method = stripe_client().v1.payment_methods.retrieve(payment_method_id)
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    card = payment_method.card
    _invoice_default_set(organization_id=organization_id, payment_method_id=payment_method_id)
    with transaction.atomic():
        config = saved_card_locked(organization_id)
        before = config.card_last4
        config.stripe_payment_method_id = payment_method_id
        config.card_last4 = (card.last4 if card is not None else "")[:4]
        config.card_brand = (card.brand if card is not None else "")[:32]
        config.card_exp_month = card.exp_month if card is not None else None
        config.card_exp_year = card.exp_year if card is not None else None
        config.save(
            update_fields=[
                "stripe_payment_method_id",
                "card_last4",
                "card_brand",
                "card_exp_month",
                "card_exp_year",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action="payment_method.save",
            organization_id=organization_id,
            target=f"AutoTopUp:{config.pk}",
            before={"card_last4": before},
            after={"card_last4": config.card_last4},
        )
    trigger_changed(organization_id, check_now=config.enabled)
    return config


@dataclass(frozen=True)
class SavedCardRemoved:
    config: AutoTopUp
    # Auto top-up was on and charged this card: it is off now, and the customer is told.
    auto_top_up_turned_off: bool


def saved_card_remove(*, organization_id: int, actor: Actor) -> SavedCardRemoved:
    """Forget the saved card: detached at Stripe (so nothing can charge it any more), no longer the invoices' card,
    and auto top-up, which needs it, turned off."""
    payment_method_id = (
        AutoTopUp.objects.filter(organization_id=organization_id)
        .values_list("stripe_payment_method_id", flat=True)
        .first()
    )
    if payment_method_id:
        try:
            stripe_client().v1.payment_methods.detach(payment_method_id)
        except stripe.InvalidRequestError as exc:
            # Already detached (or unknown to Stripe): it cannot be charged, which is what removing wants.
            logger.info("organization %s: card %s not detached: %s", organization_id, payment_method_id, exc)
        except stripe.StripeError as exc:
            raise stripe_unavailable(exc) from exc
        _invoice_default_set(organization_id=organization_id, payment_method_id="")
    with transaction.atomic():
        config = saved_card_locked(organization_id)
        was_on = config.enabled
        before = config.card_last4
        config.stripe_payment_method_id = ""
        config.card_last4 = ""
        config.card_brand = ""
        config.card_exp_month = None
        config.card_exp_year = None
        config.enabled = False
        config.save(
            update_fields=[
                "stripe_payment_method_id",
                "card_last4",
                "card_brand",
                "card_exp_month",
                "card_exp_year",
                "enabled",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action="payment_method.remove",
            organization_id=organization_id,
            target=f"AutoTopUp:{config.pk}",
            before={"card_last4": before, "auto_top_up": was_on},
            after={"card_last4": "", "auto_top_up": False},
        )
    trigger_changed(organization_id, check_now=False)
    return SavedCardRemoved(config=config, auto_top_up_turned_off=was_on)
