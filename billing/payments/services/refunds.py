"""Staff refunds of unused paid credit.

The order is what keeps money safe: the credit leaves the wallet first (a reversing ledger entry, so it cannot be
spent while the refund is under way), then Stripe returns the money with an idempotency key derived from the
refund's id. If Stripe refuses, the credit is put back as a new grant and the error kept. If Stripe gives no
definite answer (an outage), the refund stays pending and is sent again later with the same key, so the money
goes back at most once and the credit never returns twice.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import stripe
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.ids import is_id_text
from accounts.services import audit_record
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.errors import IdempotencyConflict
from billing.ledger.models import Grant
from billing.ledger.services.journal import key_clean
from billing.payments.errors import NotFound
from billing.payments.models import NANO_PER_CENT, Refund, TopUp
from billing.payments.services.common import money_clean
from billing.payments.stripe_client import stripe_client, stripe_error_is_transient
from core.errors import ApplicationError
from core.money import format_amount

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None
REASON_MAX_LENGTH = 500


def _reason_clean(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApplicationError("reason is required: say why the money goes back", param="reason")
    if len(value.strip()) > REASON_MAX_LENGTH:
        raise ApplicationError(f"reason must be at most {REASON_MAX_LENGTH} characters", param="reason")
    return value.strip()


def refund_grant_candidates(*, top_up: TopUp) -> dict[int, int]:
    """The grants a refund (or a dispute) of this top-up may take credit from, with their unused credit: the
    top-up's own grant, and the grants that put credit back after earlier refunds failed or disputes were won."""
    grant_ids: list[int | None] = [top_up.grant_id]
    grant_ids += top_up.refunds.filter(status=Refund.Status.FAILED).values_list("restore_grant_id", flat=True)
    grant_ids += top_up.disputes.values_list("restore_grant_id", flat=True)
    grant_ids += top_up.external_refunds.values_list("restore_grant_id", flat=True)
    found = Grant.objects.filter(pk__in=[grant_id for grant_id in grant_ids if grant_id is not None])
    return dict(found.values_list("pk", "remaining_nano"))


def unused_credit_take(*, top_up: TopUp, amount_nano: int, key: str, reason: str) -> int:
    """Take up to `amount_nano` of the top-up's unused credit out of the wallet, booked as a cash refund: for money
    that went back to the card outside a staff refund (a dispute, a refund made in Stripe). Returns what was
    taken. Credit held by requests in flight cannot be taken; what they do not spend comes back to the grants.

    Oldest grant first: then what is left on each grant after a set of refunds, withdrawals and reinstatements
    does not depend on the order Stripe reported them in (and neither does what a staff refund may return)."""
    spendable = max(ledger_selectors.wallet_balance(organization_id=top_up.organization_id).available_nano, 0)
    taken = 0
    candidates = refund_grant_candidates(top_up=top_up)
    for grant_id, unused in sorted(candidates.items()):
        take = min(unused, amount_nano - taken, spendable - taken)
        if take <= 0:
            continue
        ledger.grant_reverse(
            grant_id=grant_id,
            amount_nano=take,
            idempotency_key=f"{key}-{grant_id}",
            actor="stripe",
            reason=reason,
            cash_refund=True,
        )
        taken += take
    return taken


def refund_refundable(*, top_up: TopUp) -> tuple[int | None, int]:
    """(grant to take from, most one refund can return now): unused credit of one grant, not more than what of the
    top-up was not refunded yet, in whole cents."""
    if top_up.status != TopUp.Status.SUCCEEDED:
        return None, 0
    candidates = refund_grant_candidates(top_up=top_up)
    if not candidates:
        return None, 0
    grant_id = max(candidates, key=lambda pk: (candidates[pk], -pk))
    refundable = min(candidates[grant_id], top_up.amount_nano - top_up.refunded_nano)
    return grant_id, refundable - refundable % NANO_PER_CENT


@dataclass(frozen=True)
class RefundCreated:
    refund: Refund
    # False when the idempotency key named an earlier refund: that one is returned as it stands, nothing is sent.
    created: bool


def _replay(*, idempotency_key: str, top_up_id: int, amount_nano: int | None) -> Refund | None:
    """The refund an earlier request with this key made, if it asked for the same; a different ask is a conflict."""
    earlier = Refund.objects.filter(idempotency_key=idempotency_key).first()
    if earlier is None:
        return None
    if earlier.top_up_id != top_up_id or (amount_nano is not None and amount_nano != earlier.amount_nano):
        raise IdempotencyConflict(
            f"this idempotency key was used for refund {earlier.pk} ({format_amount(earlier.amount_nano)} of "
            f"top-up {earlier.top_up_id}); use a new key for a different refund",
            param="idempotency_key",
        )
    return earlier


def refund_create(
    *, top_up_id: object, amount: object, reason: object, actor: Actor, idempotency_key: object
) -> RefundCreated:
    """Refund (part of) a paid top-up's unused credit to the card. `amount` is a decimal string, or None for all
    that can be refunded. Returns the refund: succeeded, pending (Stripe not reached yet; it will be retried), or
    failed (Stripe refused; the credit is back in the wallet).

    `idempotency_key` is required: a request repeated with the same key (a timeout, a double click) returns the
    first refund instead of refunding again; the same key for another top-up or amount is refused (409)."""
    if not isinstance(top_up_id, int) or isinstance(top_up_id, bool):
        raise ApplicationError("top_up_id must be an integer id", param="top_up_id")
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise ApplicationError(
            "an idempotency key is required: send an Idempotency-Key header so a retried request can never refund "
            "twice",
            param="idempotency_key",
            code="idempotency_key_required",
        )
    key = key_clean(idempotency_key.strip())
    amount_nano = None if amount is None or amount == "" else money_clean(amount, param="amount")
    earlier = _replay(idempotency_key=key, top_up_id=top_up_id, amount_nano=amount_nano)
    if earlier is not None:
        return RefundCreated(earlier, created=False)
    refund, created = _refund_book(
        top_up_id=top_up_id, amount_nano=amount_nano, reason=_reason_clean(reason), actor=actor, idempotency_key=key
    )
    if not created:
        return RefundCreated(refund, created=False)
    return RefundCreated(refund_send(refund_id=refund.pk), created=True)


def _refund_book(
    *, top_up_id: int, amount_nano: int | None, reason: str, actor: Actor, idempotency_key: str
) -> tuple[Refund, bool]:
    """Take the credit out of the wallet and record the refund, in one transaction. (refund, False) when a
    concurrent request with the same key got there first."""
    with transaction.atomic(durable=True):
        top_up = TopUp.objects.select_for_update().filter(pk=top_up_id).first()
        if top_up is None:
            raise NotFound("top-up not found", param="top_up_id")
        # Under the top-up's lock: a twin request with this key that was waiting for it finds the refund made.
        earlier = _replay(idempotency_key=idempotency_key, top_up_id=top_up_id, amount_nano=amount_nano)
        if earlier is not None:
            return earlier, False
        if top_up.status != TopUp.Status.SUCCEEDED:
            raise ApplicationError("only a paid top-up can be refunded", param="top_up_id", code="not_paid")
        grant_id, refundable = refund_refundable(top_up=top_up)
        if grant_id is None or refundable <= 0:
            raise ApplicationError(
                "nothing of this top-up can be refunded: its credit was used or refunded already",
                param="top_up_id",
                code="nothing_to_refund",
            )
        if amount_nano is None:
            amount_nano = refundable
        if amount_nano > refundable:
            raise ApplicationError(
                f"at most {format_amount(refundable)} {top_up.currency} of this top-up can be refunded now "
                "(its unused credit that was not refunded yet)",
                param="amount",
                code="exceeds_refundable",
            )
        sequence = top_up.refunds.count() + 1
        journal = ledger.grant_reverse(
            grant_id=grant_id,
            amount_nano=amount_nano,
            idempotency_key=f"top-up-{top_up.pk}-refund-{sequence}",
            actor=actor if isinstance(actor, AbstractBaseUser) else None,
            reason=f"Refund to card of {top_up.receipt_number}: {reason}",
            cash_refund=True,
        ).transaction
        try:
            with transaction.atomic():
                refund = Refund.objects.create(
                    top_up=top_up,
                    amount_nano=amount_nano,
                    status=Refund.Status.PENDING,
                    grant_id=grant_id,
                    ledger_transaction_id=journal.pk,
                    reason=reason,
                    idempotency_key=idempotency_key,
                    created_by_id=actor.pk if isinstance(actor, AbstractBaseUser) else None,
                )
        except IntegrityError:
            # The same key, at the same moment, for another top-up (whose lock we do not hold): this one yields.
            raise IdempotencyConflict(
                "this idempotency key is being used for another refund; use a new key for a different refund",
                param="idempotency_key",
            ) from None
        TopUp.objects.filter(pk=top_up.pk).update(refunded_nano=F("refunded_nano") + amount_nano)
        audit_record(
            actor=actor,
            action="top_up.refund",
            organization_id=top_up.organization_id,
            target=f"TopUp:{top_up.pk}",
            reason=reason,
            detail={
                "refund_id": refund.pk,
                "amount": format_amount(amount_nano),
                "currency": top_up.currency,
                "grant_id": grant_id,
                "payment_intent": top_up.stripe_payment_intent_id,
            },
        )
    return refund, True


def refund_send(*, refund_id: int) -> Refund:
    """Ask Stripe to return a pending refund's money (again, after an outage: same idempotency key)."""
    refund = Refund.objects.select_related("top_up").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING or refund.stripe_refund_id:
        return refund
    top_up = refund.top_up
    try:
        stripe_refund = stripe_client().v1.refunds.create(
            params={
                "payment_intent": str(top_up.stripe_payment_intent_id),
                "amount": refund.amount_nano // NANO_PER_CENT,
                "metadata": {
                    "refund_id": str(refund.pk),
                    "top_up_id": str(top_up.pk),
                    "organization_id": str(top_up.organization_id),
                },
            },
            options={"idempotency_key": f"refund-{refund.pk}"},
        )
    except stripe.StripeError as exc:
        if stripe_error_is_transient(exc):
            # Stripe may or may not have refunded: keep the credit out and ask again later with the same key.
            logger.warning("refund %s: no answer from Stripe, will retry: %s", refund.pk, exc)
            Refund.objects.filter(pk=refund.pk).update(
                error=f"Stripe not reached: {exc}"[:2000], updated_at=timezone.now()
            )
        else:
            logger.error("refund %s refused by Stripe: %s", refund.pk, exc)
            refund_restore(refund_id=refund.pk, error=f"Stripe refused the refund: {exc.user_message or exc}")
        return Refund.objects.get(pk=refund.pk)
    refund_stripe_update(refund_id=refund.pk, stripe_refund=stripe_refund.to_dict())
    return Refund.objects.get(pk=refund.pk)


def refund_stripe_update(*, refund_id: int, stripe_refund: dict[str, Any]) -> Refund:
    """Apply what Stripe says about a refund (its answer, or a `refund.*` webhook)."""
    status = stripe_refund.get("status")
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.stripe_refund_id is None and isinstance(stripe_refund.get("id"), str):
            refund.stripe_refund_id = stripe_refund["id"]
            refund.save(update_fields=["stripe_refund_id", "updated_at"])
        if status == "succeeded" and refund.status == Refund.Status.PENDING:
            refund.status = Refund.Status.SUCCEEDED
            refund.error = ""
            refund.save(update_fields=["status", "error", "updated_at"])
        elif status in ("failed", "canceled") and refund.status != Refund.Status.FAILED:
            reason = stripe_refund.get("failure_reason") or status
            refund_restore(refund_id=refund.pk, error=f"Stripe reports the refund {status} ({reason})")
    return Refund.objects.get(pk=refund_id)


def refund_restore(*, refund_id: int, error: str) -> Refund:
    """Stripe did not return the money: put the credit back in the wallet as a new grant and keep the error."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().select_related("top_up").get(pk=refund_id)
        if refund.status == Refund.Status.FAILED:
            return refund
        top_up = refund.top_up
        result = ledger.grant_create(
            organization_id=top_up.organization_id,
            kind="paid",
            amount_nano=refund.amount_nano,
            idempotency_key=f"refund-{refund.pk}-restore",
            actor="system",
            reason=f"Refund {refund.pk} of {top_up.receipt_number} did not go through; credit put back",
            source_ref=str(top_up.stripe_payment_intent_id or ""),
        )
        refund.status = Refund.Status.FAILED
        refund.restore_grant_id = result.grant.pk
        refund.error = error[:2000]
        refund.save(update_fields=["status", "restore_grant_id", "error", "updated_at"])
        TopUp.objects.filter(pk=top_up.pk).update(refunded_nano=F("refunded_nano") - refund.amount_nano)
        audit_record(
            actor=None,
            action="top_up.refund_failed",
            organization_id=top_up.organization_id,
            target=f"TopUp:{top_up.pk}",
            reason=error,
            detail={"refund_id": refund.pk, "amount": format_amount(refund.amount_nano), "grant_id": result.grant.pk},
        )
    return refund


def refund_for_stripe_refund(stripe_refund: dict[str, Any]) -> Refund | None:
    """Our refund behind a Stripe refund (from a webhook): by its id, or by the metadata we put on it."""
    stripe_id = stripe_refund.get("id")
    refund = Refund.objects.filter(stripe_refund_id=stripe_id).first() if isinstance(stripe_id, str) else None
    if refund is not None:
        return refund
    raw = (stripe_refund.get("metadata") or {}).get("refund_id")
    if is_id_text(raw):
        refund = Refund.objects.filter(pk=int(raw), stripe_refund_id__isnull=True).first()
    return refund


def refunds_resume(*, older_than_seconds: int = 120, page_size: int = 100) -> int:
    """The sweeper: settle refunds still pending after a while. Ones that never got an answer are looked up at
    Stripe by our metadata first (so an idempotency key that expired cannot refund twice), then sent again.

    Every pending refund is visited, `page_size` rows at a time in (created_at, id) order: a page of refunds that
    stay pending (Stripe still processing them) must not hide the ones behind it."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = Refund.objects.filter(status=Refund.Status.PENDING, created_at__lte=cutoff).select_related("top_up")
    settled = 0
    after: tuple[Any, int] | None = None
    while True:
        page = pending
        if after is not None:
            page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        refunds = list(page.order_by("created_at", "pk")[:page_size])
        if not refunds:
            return settled
        for refund in refunds:
            if not _refund_resume(refund):
                return settled  # Stripe not reached: the rest wait for the next run
            settled += 1
        after = (refunds[-1].created_at, refunds[-1].pk)


def _refund_resume(refund: Refund) -> bool:
    """Settle one pending refund from Stripe's record of it, or send it again. False when Stripe was not reached."""
    found: dict[str, Any] | None
    try:
        if refund.stripe_refund_id:
            found = stripe_client().v1.refunds.retrieve(refund.stripe_refund_id).to_dict()
        else:
            listed = stripe_client().v1.refunds.list(
                params={"payment_intent": str(refund.top_up.stripe_payment_intent_id), "limit": 100}
            )
            # All of the PaymentIntent's refunds, not only Stripe's first page of them.
            candidates = (r.to_dict() for r in listed.auto_paging_iter())
            found = next((r for r in candidates if (r.get("metadata") or {}).get("refund_id") == str(refund.pk)), None)
    except stripe.StripeError as exc:
        logger.warning("refund %s: Stripe not reached while resuming: %s", refund.pk, exc)
        return False
    if found is not None:
        refund_stripe_update(refund_id=refund.pk, stripe_refund=found)
    else:
        refund_send(refund_id=refund.pk)
    return True
