"""Refunds of paid top-ups made outside this product (in Stripe's Dashboard, say), from `refund.*` webhooks that
name no refund of ours.

The money went back to the card, so the credit it bought leaves the wallet: the top-up's unused credit, up to the
refunded amount, booked as a cash refund; credit already spent cannot be taken back and is recorded as
unrecovered. The amount counts as refunded on the top-up, so staff cannot refund the same money again. A refund
Stripe later reports failed gets its credit granted again. Each runs inside the webhook event's transaction with
the top-up row locked, so the same refund reported twice, or by two events at once, moves credit once.
"""

import logging
from typing import Any

from django.db.models import F
from django.db.models.functions import Greatest, Least

from billing.ledger import services as ledger
from billing.payments.models import NANO_PER_CENT, ExternalRefund, TopUp
from billing.payments.services.common import paid_top_up_locked
from billing.payments.services.refunds import unused_credit_take

logger = logging.getLogger(__name__)


def external_refund_changed(*, stripe_refund: dict[str, Any]) -> ExternalRefund | None:
    """Book what Stripe says of a refund made outside this product: credit leaves with a refund that succeeded and
    comes back with one that then failed. None when the refund is not of a paid top-up of this product, or is
    still under way (nothing is booked until the money has gone)."""
    top_up = paid_top_up_locked(stripe_refund)
    if top_up is None:
        return None
    refund_id, status = str(stripe_refund.get("id") or ""), stripe_refund.get("status")
    amount, currency = stripe_refund.get("amount"), str(stripe_refund.get("currency") or "").upper()
    if not refund_id or not isinstance(amount, int) or not 0 < amount <= top_up.amount_cents:
        raise ValueError(f"refund {refund_id or '(no id)'} of {amount} cents does not fit top-up {top_up.pk}")
    if currency != top_up.currency.upper():
        raise ValueError(f"refund {refund_id} is in {currency}, top-up {top_up.pk} was paid in {top_up.currency}")
    booked = ExternalRefund.objects.filter(stripe_refund_id=refund_id).first()
    if booked is None and status == "succeeded":
        return _book(top_up=top_up, refund_id=refund_id, amount_nano=amount * NANO_PER_CENT)
    if booked is not None and booked.status == ExternalRefund.Status.SUCCEEDED and status in ("failed", "canceled"):
        return _restore(booked)
    return booked


def _book(*, top_up: TopUp, refund_id: str, amount_nano: int) -> ExternalRefund:
    why = f"Refund {refund_id} of {top_up.receipt_number}, made in Stripe"
    taken = unused_credit_take(top_up=top_up, amount_nano=amount_nano, key=f"external-refund-{refund_id}", reason=why)
    booked = ExternalRefund.objects.create(
        top_up=top_up, stripe_refund_id=refund_id, amount_nano=amount_nano, taken_nano=taken
    )
    # Never past the payment: a staff refund still on its way to Stripe may count the same money until Stripe
    # refuses it as more than the payment (its credit then comes back).
    TopUp.objects.filter(pk=top_up.pk).update(refunded_nano=Least(F("refunded_nano") + amount_nano, F("amount_nano")))
    if booked.unrecovered_nano:
        logger.warning(
            "refund %s made in Stripe: %s nano of top-up %s was already spent and is not recovered",
            refund_id,
            booked.unrecovered_nano,
            top_up.pk,
        )
    return booked


def _restore(booked: ExternalRefund) -> ExternalRefund:
    top_up = booked.top_up
    if booked.taken_nano:
        result = ledger.grant_create(
            organization_id=top_up.organization_id,
            kind="paid",
            amount_nano=booked.taken_nano,
            idempotency_key=f"external-refund-{booked.stripe_refund_id}-restore",
            actor="stripe",
            reason=f"Refund {booked.stripe_refund_id} of {top_up.receipt_number} failed: the payment stands",
            source_ref=booked.stripe_refund_id,
        )
        booked.restore_grant_id = result.grant.pk
    booked.status = ExternalRefund.Status.FAILED
    booked.save(update_fields=["status", "restore_grant_id", "updated_at"])
    TopUp.objects.filter(pk=top_up.pk).update(refunded_nano=Greatest(F("refunded_nano") - booked.amount_nano, 0))
    return booked
