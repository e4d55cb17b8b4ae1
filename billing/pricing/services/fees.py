"""Fees that prepaid credit could not pay, handed to invoicing: a plan's renewal fee (the subscription is renewed
with it, see plans.subscription_renew_invoiced) and a commitment's payment still due. The close of the
organization's billing period puts each on its invoice as a line and marks it invoiced here (no longer retried from
credit); the invoice's payment, booked as paid credit, then pays it with the very debit credit would have made,
under the same idempotency key.

A fee is named by a reference, "subscription_period:<id>" or "commitment_charge:<id>", which the invoice line keeps.
"""

from datetime import datetime

from django.db import transaction

from billing.pricing.models import ChargeStatus, CommitmentCharge, SubscriptionPeriod
from billing.pricing.services.commitments import commitment_fee_debit
from billing.pricing.services.plans import plan_fee_debit

PLAN = "subscription_period"
COMMITMENT = "commitment_charge"


def _parse(fee_ref: str) -> tuple[str, int]:
    kind, _, raw = fee_ref.partition(":")
    if kind not in (PLAN, COMMITMENT) or not raw.isdigit():
        raise ValueError(f"{fee_ref!r} is not a fee reference")
    return kind, int(raw)


@transaction.atomic
def fees_invoice(*, fee_refs: list[str], now: datetime) -> None:
    """Mark the fees invoiced (their invoice's lines are written in the same transaction)."""
    parsed = [_parse(ref) for ref in fee_refs]
    SubscriptionPeriod.objects.filter(pk__in=[pk for kind, pk in parsed if kind == PLAN], invoiced_at=None).update(
        invoiced_at=now
    )
    CommitmentCharge.objects.filter(
        pk__in=[pk for kind, pk in parsed if kind == COMMITMENT], status=ChargeStatus.DUE, invoiced_at=None
    ).update(invoiced_at=now)


@transaction.atomic
def fee_settle(*, fee_ref: str, now: datetime, actor: str) -> int | None:
    """Pay an invoiced fee from credit (the invoice's payment, just granted): returns its debit's transaction id,
    or None if it was paid already. InsufficientCredit propagates (the fee stays owed)."""
    kind, pk = _parse(fee_ref)
    if kind == PLAN:
        record = SubscriptionPeriod.objects.select_for_update().select_related("subscription", "plan").get(pk=pk)
        if record.debit_transaction_id is not None:
            return None
        record.debit_transaction_id = plan_fee_debit(record=record, actor=actor).pk
        record.save(update_fields=["debit_transaction_id"])
        return record.debit_transaction_id
    charge = CommitmentCharge.objects.select_for_update().select_related("commitment").get(pk=pk)
    if charge.status == ChargeStatus.PAID:
        return None
    debit = commitment_fee_debit(charge=charge, actor=actor)
    charge.status, charge.debit_transaction_id, charge.paid_at = ChargeStatus.PAID, debit.pk, now
    charge.save(update_fields=["status", "debit_transaction_id", "paid_at"])
    return debit.pk
