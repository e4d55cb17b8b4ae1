"""What the payment services share: amount checks, Stripe ids in metadata, idempotency keys."""

import re
from typing import Any

import stripe
from django.conf import settings

from billing.payments.errors import EventWaits, PaymentsUnavailable
from billing.payments.models import NANO_PER_CENT, TopUp
from billing.payments.stripe_client import stripe_error_message
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, AmountError, format_amount, parse_amount

# What a person may type: digits, optionally a decimal point and digits (no signs, exponents or separators).


def money_clean(value: object, *, param: str, allow_zero: bool = False) -> int:
    """A decimal amount typed by a person ("20", "20.50") as nano-units, in whole cents.

    Strings only (or whole numbers); floats, signs, exponents and more than two decimals are refused with a
    message saying what to type instead.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApplicationError(f'{param} must be a decimal string such as "20.00"', param=param, code="invalid_amount")
    text = str(value).strip()
    if not text:
        raise ApplicationError(f"{param} is required", param=param, code="invalid_amount")
    if re.fullmatch(r"\+.*|[-0-9.]*[eE][-+0-9]*|[-+]?(nan|inf(inity)?)", text, re.IGNORECASE):
        # A plus sign, exponents, NaN and infinities: numbers, but not as people write amounts.
        raise ApplicationError(
            f'{param} must be written with digits and a decimal point, such as "20.00"',
            param=param,
            code="invalid_amount",
        )
    try:
        nano = parse_amount(text, allow_zero=allow_zero)
    except AmountError as exc:
        message = str(exc).replace("amount", param, 1) if str(exc).startswith("amount") else f"{param}: {exc}"
        raise ApplicationError(message, param=param, code="invalid_amount") from None
    decimals = text.partition(".")[2]
    if len(decimals) > 2 or nano % NANO_PER_CENT:
        raise ApplicationError(
            f"{param} can have at most 2 decimal places (whole cents)", param=param, code="invalid_amount"
        )
    if nano > MAX_AMOUNT_NANO:
        raise ApplicationError(f"{param} is too large", param=param, code="invalid_amount")
    return nano


def topup_bounds_check(amount_nano: int, *, currency: str, param: str = "amount") -> int:
    """Refuse an amount outside the configured bounds of one top-up (TOPUP_MIN_AMOUNT, TOPUP_MAX_AMOUNT)."""
    low, high = settings.TOPUP_MIN_AMOUNT_NANO, settings.TOPUP_MAX_AMOUNT_NANO
    if amount_nano < low:
        raise ApplicationError(
            f"{param} must be at least {format_amount(low)} {currency}", param=param, code="amount_too_small"
        )
    if amount_nano > high:
        raise ApplicationError(
            f"{param} must be at most {format_amount(high)} {currency}", param=param, code="amount_too_large"
        )
    return amount_nano


def topup_amount_clean(value: object, *, currency: str, param: str = "amount") -> int:
    """A top-up amount from a person: a decimal string, whole cents, within the configured bounds."""
    return topup_bounds_check(money_clean(value, param=param), currency=currency, param=param)


def stripe_id_clean(value: object, *, param: str, prefix: str) -> str:
    """A Stripe object id from a request ("seti_..."): a short string with the expected prefix."""
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > 255:
        raise ApplicationError(f"{param} must be a Stripe id starting with {prefix}", param=param)
    return value


def stripe_unavailable(exc: stripe.StripeError) -> PaymentsUnavailable:
    """What a person is told when Stripe failed for a reason that is not their card (outage, set-up)."""
    return PaymentsUnavailable(stripe_error_message(exc))


def error_payment_intent_id(exc: stripe.StripeError) -> str | None:
    """The PaymentIntent a card error is about, when Stripe says (it does; localstripe does not)."""
    error: Any = exc.error
    payment_intent = getattr(error, "payment_intent", None) if error is not None else None
    if payment_intent is None:
        return None
    pi_id = payment_intent if isinstance(payment_intent, str) else getattr(payment_intent, "id", None)
    return str(pi_id) if pi_id else None


def top_up_metadata(*, top_up_id: int, organization_id: int, kind: str) -> dict[str, str]:
    """Metadata on every PaymentIntent we create: how a webhook finds the top-up even before we stored its id."""
    return {"top_up_id": str(top_up_id), "organization_id": str(organization_id), "kind": kind}


def payment_intent_named(stripe_object: dict[str, Any]) -> str | None:
    """The PaymentIntent a Stripe object (a refund, a dispute) names, expanded or not; None when it names none."""
    payment_intent = stripe_object.get("payment_intent")
    if isinstance(payment_intent, dict):  # expanded
        payment_intent = payment_intent.get("id")
    if not isinstance(payment_intent, str) or not payment_intent or len(payment_intent) > 255:
        return None
    return payment_intent


def paid_top_up_locked(stripe_object: dict[str, Any]) -> TopUp | None:
    """The paid top-up a Stripe object (a dispute, a refund) is about, by its PaymentIntent, locked for the rest of
    the transaction; None when it names no PaymentIntent (then it is not about a top-up of ours).

    Raises EventWaits when no paid top-up has that PaymentIntent (yet): Stripe may tell us of a refund or a dispute
    before the payment's success, and a payment we never saw may still turn out to be ours. The event is kept,
    never dropped."""
    payment_intent = payment_intent_named(stripe_object)
    if payment_intent is None:
        return None
    top_up = (
        TopUp.objects.select_for_update()
        .filter(stripe_payment_intent_id=payment_intent, status=TopUp.Status.SUCCEEDED)
        .first()
    )
    if top_up is None:
        raise EventWaits(f"waits for the payment_intent.succeeded of {payment_intent} (no paid top-up has it yet)")
    return top_up
