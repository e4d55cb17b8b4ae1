"""Card disputes (chargebacks) of paid top-ups, from Stripe's `charge.dispute.*` webhooks.

A dispute is recorded at the first event that names it. Credit moves only with the money: when the bank takes
the payment back (`charge.dispute.funds_withdrawn`) the top-up's unused credit leaves the wallet, up to the
disputed amount, booked as a cash refund; credit already spent cannot be taken back and is recorded on the
dispute as unrecovered. When the money comes back (`charge.dispute.funds_reinstated`, a dispute won) the credit
taken is granted again. Each runs inside the webhook event's transaction with the top-up row locked, so two
events of one dispute, or the same event twice, move credit once; the ledger's idempotency keys are derived
from the dispute's id besides. An event about a payment not paid yet, or a reinstatement before its withdrawal,
waits (EventWaits) and is applied when the event it waits for arrives.
"""

import logging
from typing import Any

from billing.ledger import services as ledger
from billing.payments.errors import EventWaits
from billing.payments.models import NANO_PER_CENT, Dispute
from billing.payments.services.auto_topup import auto_topup_disable
from billing.payments.services.common import paid_top_up_locked
from billing.payments.services.refunds import unused_credit_take

logger = logging.getLogger(__name__)

_CLOSED_STATUSES = {"won": Dispute.Status.WON, "lost": Dispute.Status.LOST, "warning_closed": Dispute.Status.CLOSED}


def _dispute_get(stripe_dispute: dict[str, Any]) -> Dispute | None:
    """The dispute's row (created at first sight), its top-up locked; None when the dispute is not about ours."""
    top_up = paid_top_up_locked(stripe_dispute)
    if top_up is None:
        return None
    amount, currency = stripe_dispute.get("amount"), str(stripe_dispute.get("currency") or "").upper()
    if not isinstance(amount, int) or not 0 < amount <= top_up.amount_cents or currency != top_up.currency.upper():
        raise ValueError(
            f"dispute {stripe_dispute.get('id')} is for {amount} {currency} cents, top-up {top_up.pk} was "
            f"{top_up.amount_cents} {top_up.currency}"
        )
    dispute, _ = Dispute.objects.get_or_create(
        stripe_dispute_id=str(stripe_dispute["id"]),
        defaults={
            "top_up": top_up,
            "amount_nano": amount * NANO_PER_CENT,
            "reason": str(stripe_dispute.get("reason") or "")[:100],
        },
    )
    if dispute.top_up_id != top_up.pk:
        raise ValueError(f"dispute {dispute.stripe_dispute_id} was recorded for top-up {dispute.top_up_id}")
    return dispute


def dispute_changed(*, stripe_dispute: dict[str, Any]) -> Dispute | None:
    """A dispute opened, changed or closed: record it and its outcome. No credit moves here."""
    dispute = _dispute_get(stripe_dispute)
    if dispute is None:
        return None
    closed = _CLOSED_STATUSES.get(str(stripe_dispute.get("status")))
    if closed is not None and dispute.status != closed:
        dispute.status = closed
        dispute.save(update_fields=["status", "updated_at"])
    return dispute


def dispute_funds_withdrawn(*, stripe_dispute: dict[str, Any]) -> Dispute | None:
    """The bank took the payment back: take the top-up's unused credit out of the wallet, up to the disputed
    amount, once. What was already spent is recorded as unrecovered. Auto top-up is turned off: charging a card
    whose holder disputes its payments again would only bring more disputes.

    The withdrawal is taken even when the dispute is already known to be won (its closing came first: Stripe does
    not promise the order of events): the reinstatement that follows a won dispute puts it back, so the end state
    is the same in every order."""
    dispute = _dispute_get(stripe_dispute)
    if dispute is None or dispute.funds_withdrawn:
        return dispute
    top_up = dispute.top_up
    why = f"Card dispute {dispute.stripe_dispute_id} of {top_up.receipt_number} ({dispute.reason or 'no reason'})"
    taken = unused_credit_take(
        top_up=top_up, amount_nano=dispute.amount_nano, key=f"dispute-{dispute.stripe_dispute_id}", reason=why
    )
    dispute.funds_withdrawn = True
    dispute.taken_nano = taken
    dispute.save(update_fields=["funds_withdrawn", "taken_nano", "updated_at"])
    auto_topup_disable(
        organization_id=top_up.organization_id,
        reason=f"The payment of {top_up.receipt_number} was disputed with the card's bank. Turn auto top-up on "
        "again once the card is sorted out.",
    )
    if dispute.unrecovered_nano:
        logger.warning(
            "dispute %s: %s nano of top-up %s was already spent and is not recovered",
            dispute.stripe_dispute_id,
            dispute.unrecovered_nano,
            top_up.pk,
        )
    return dispute


def dispute_funds_reinstated(*, stripe_dispute: dict[str, Any]) -> Dispute | None:
    """The money came back (the dispute was won): grant the credit taken back again, once. A reinstatement that
    arrives before its withdrawal waits for it (EventWaits): applied in Stripe's order, the two leave the same
    state as any other order."""
    dispute = _dispute_get(stripe_dispute)
    if dispute is None or dispute.restore_grant_id is not None:
        return dispute
    if not dispute.funds_withdrawn:
        raise EventWaits(f"waits for the charge.dispute.funds_withdrawn of dispute {dispute.stripe_dispute_id}")
    if dispute.status != Dispute.Status.WON:
        dispute.status = Dispute.Status.WON
        dispute.save(update_fields=["status", "updated_at"])
    if not dispute.taken_nano:
        return dispute
    top_up = dispute.top_up
    result = ledger.grant_create(
        organization_id=top_up.organization_id,
        kind="paid",
        amount_nano=dispute.taken_nano,
        idempotency_key=f"dispute-{dispute.stripe_dispute_id}-reinstated",
        actor="stripe",
        reason=f"Card dispute {dispute.stripe_dispute_id} of {top_up.receipt_number} reversed: the payment stands",
        source_ref=dispute.stripe_dispute_id,
    )
    dispute.restore_grant_id = result.grant.pk
    dispute.save(update_fields=["restore_grant_id", "updated_at"])
    return dispute
