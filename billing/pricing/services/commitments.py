"""Reserved commitments: staff define offers, organizations buy them, a task bills the monthly ones and closes
each commitment month (use-or-lose). See models.commitments for the terms.

The monthly fee is ceil(monthly tokens x blended on-demand price x (1 - discount)), in nano-units. Payment is
taken from prepaid credit with `wallet_debit` under a key derived from the commitment and month. A monthly
payment that credit cannot cover when due is recorded as due (still owed: invoicing collects it) and retried;
the commitment's tokens are available regardless, because the organization is bound to pay for them.
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from api.errors import ApplicationError
from billing.ledger import services as ledger
from billing.ledger.errors import InsufficientCredit
from billing.pricing import periods
from billing.pricing.errors import PricingConflict, PricingNotFound
from billing.pricing.models import (
    MINUTES_PER_MONTH,
    ChargeStatus,
    Commitment,
    CommitmentCharge,
    CommitmentOffer,
    CommitmentPayment,
    CommitmentStatus,
    CounterKind,
)
from billing.pricing.models.commitments import TERMS_MONTHS
from billing.pricing.services import counters, validation
from billing.pricing.services.catalog import _full_clean, _user
from billing.pricing.services.scope import scope_resolve

BPS = 10_000
OFFER_FIELDS = (
    "name",
    "committed_tokens_per_month",
    "reserved_tokens_per_minute",
    "term_months",
    "discount_bps",
    "payment",
    "blended_price_micro_per_mtok",
    "currency",
    "is_active",
)


def commitment_monthly_fee_nano(*, monthly_tokens: int, blended_price_micro_per_mtok: int, discount_bps: int) -> int:
    """ceil(tokens x price (micro per Mtok = nano per 1000 tokens) x (1 - discount)), in nano-units."""
    return -(-monthly_tokens * blended_price_micro_per_mtok * (BPS - discount_bps) // (1000 * BPS))


def _offer_check(values: dict[str, Any]) -> None:
    committed, reserved = values.get("committed_tokens_per_month"), values.get("reserved_tokens_per_minute")
    if (committed is None) == (reserved is None):
        raise ApplicationError(
            "Give either committed_tokens_per_month or reserved_tokens_per_minute.",
            param="committed_tokens_per_month",
            code="invalid_value",
        )
    if committed is not None:
        validation.tokens(committed, param="committed_tokens_per_month", minimum=1)
    if reserved is not None:
        validation.tokens(reserved, param="reserved_tokens_per_minute", minimum=1, maximum=10**14 // MINUTES_PER_MONTH)
    if values.get("term_months") not in TERMS_MONTHS:
        raise ApplicationError("term_months must be 1, 3 or 12.", param="term_months", code="invalid_value")
    validation.bps(values.get("discount_bps"), param="discount_bps", maximum=BPS - 1)
    validation.whole(
        values.get("blended_price_micro_per_mtok"), param="blended_price_micro_per_mtok", minimum=1, maximum=10**12
    )
    if values.get("payment") not in CommitmentPayment.values:
        raise ApplicationError("payment must be upfront or monthly.", param="payment", code="invalid_value")


def _offer_detail(offer: CommitmentOffer) -> dict[str, Any]:
    return {**{f: getattr(offer, f) for f in OFFER_FIELDS}, "scope": offer.scope_key}


@transaction.atomic
def commitment_offer_create(
    *, name: str, model: str | None = None, group: str | None = None, actor: Any = None, **terms: Any
) -> CommitmentOffer:
    values = {k: v for k, v in terms.items() if k in OFFER_FIELDS}
    _offer_check(values)
    scope_model, scope_group = scope_resolve(model_slug=model, group=group)
    offer = CommitmentOffer(name=name, model=scope_model, group=scope_group, created_by=_user(actor), **values)
    _full_clean(offer)
    offer.save()
    audit_record(
        actor=actor,
        action="pricing.commitment_offer.create",
        target=f"CommitmentOffer:{offer.pk}",
        detail=_offer_detail(offer),
    )
    return offer


@transaction.atomic
def commitment_offer_update(*, offer_id: int, actor: Any = None, **terms: Any) -> CommitmentOffer:
    """Change an offer. Purchases keep the terms they were bought with; this changes future purchases only."""
    offer = CommitmentOffer.objects.select_for_update(of=("self",)).select_related("model").filter(pk=offer_id).first()
    if offer is None:
        raise PricingNotFound(f"No commitment offer {offer_id}.", param="offer")
    for key, value in terms.items():
        if key in OFFER_FIELDS:
            setattr(offer, key, value)
    _offer_check({f: getattr(offer, f) for f in OFFER_FIELDS})
    _full_clean(offer)
    offer.save()
    audit_record(
        actor=actor,
        action="pricing.commitment_offer.update",
        target=f"CommitmentOffer:{offer.pk}",
        detail=_offer_detail(offer),
    )
    return offer


def _charge(
    commitment: Commitment, *, month_index: int, amount: int, start: datetime, end: datetime, actor: Any
) -> CommitmentCharge:
    """Collect one payment (the term upfront, or one month) from credit; InsufficientCredit propagates."""
    debit = ledger.wallet_debit(
        organization_id=commitment.organization_id,
        amount_nano=amount,
        idempotency_key=f"commitment:{commitment.pk}:month:{month_index}",
        actor=actor,
        reason=f"reserved commitment {commitment.pk}, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        category="commitment",
    )
    return CommitmentCharge.objects.create(
        commitment=commitment,
        organization_id=commitment.organization_id,
        month_index=month_index,
        period_start=start,
        period_end=end,
        amount_nano=amount,
        status=ChargeStatus.PAID,
        debit_transaction_id=debit.pk,
        paid_at=timezone.now(),
    )


def _open_month(commitment: Commitment, month_index: int) -> None:
    start = periods.add_months(commitment.starts_at, month_index)
    counters.counter_open(
        organization_id=commitment.organization_id,
        kind=CounterKind.COMMITMENT,
        owner_id=commitment.pk,
        scope_key=commitment.scope_key,
        period_start=start,
        period_end=periods.add_months(commitment.starts_at, month_index + 1),
        limit_tokens=commitment.monthly_tokens,
    )


@transaction.atomic
def commitment_purchase(
    *, organization_id: int, offer_id: int, actor: Any = None, starts_at: datetime | None = None
) -> Commitment:
    """Buy an offer for an organization from `starts_at` (now): pays the term (upfront) or the first month from
    credit at once (InsufficientCredit, 402, and nothing is written when credit does not cover it)."""
    now = timezone.now()
    starts_at = validation.moment(starts_at or now, param="starts_at")
    if starts_at < now - timedelta(minutes=5):
        raise ApplicationError("A commitment cannot start in the past.", param="starts_at", code="invalid_value")
    if not Organization.objects.filter(pk=organization_id).exists():
        raise PricingNotFound(f"No organization {organization_id}.", param="organization")
    offer = CommitmentOffer.objects.select_related("model").filter(pk=offer_id).first()
    if offer is None:
        raise PricingNotFound(f"No commitment offer {offer_id}.", param="offer")
    if not offer.is_active:
        raise PricingConflict(f"Commitment offer {offer_id} is no longer offered.", param="offer")
    monthly_fee = commitment_monthly_fee_nano(
        monthly_tokens=offer.monthly_tokens,
        blended_price_micro_per_mtok=offer.blended_price_micro_per_mtok,
        discount_bps=offer.discount_bps,
    )
    commitment = Commitment.objects.create(
        organization_id=organization_id,
        offer=offer,
        model=offer.model,
        group=offer.group,
        monthly_tokens=offer.monthly_tokens,
        reserved_tokens_per_minute=offer.reserved_tokens_per_minute or 0,
        term_months=offer.term_months,
        discount_bps=offer.discount_bps,
        blended_price_micro_per_mtok=offer.blended_price_micro_per_mtok,
        payment=offer.payment,
        monthly_fee_nano=monthly_fee,
        total_fee_nano=monthly_fee * offer.term_months,
        starts_at=starts_at,
        ends_at=periods.add_months(starts_at, offer.term_months),
        created_by=_user(actor),
    )
    _open_month(commitment, 0)  # counters before the wallet (lock order)
    if commitment.total_fee_nano:
        if offer.payment == CommitmentPayment.UPFRONT:
            _charge(
                commitment,
                month_index=0,
                amount=commitment.total_fee_nano,
                start=starts_at,
                end=commitment.ends_at,
                actor=actor,
            )
        else:
            _charge(
                commitment,
                month_index=0,
                amount=monthly_fee,
                start=starts_at,
                end=periods.add_months(starts_at, 1),
                actor=actor,
            )
    audit_record(
        actor=actor,
        action="pricing.commitment.purchase",
        organization_id=organization_id,
        target=f"Commitment:{commitment.pk}",
        detail={
            "offer": offer.pk,
            "scope": commitment.scope_key,
            "monthly_tokens": commitment.monthly_tokens,
            "monthly_fee_nano": monthly_fee,
            "payment": offer.payment,
            "starts_at": starts_at.isoformat(),
            "ends_at": commitment.ends_at.isoformat(),
        },
    )
    return commitment


def commitment_bill(*, commitment_id: int, now: datetime | None = None) -> str:
    """Bill a monthly commitment's months that have started (and retry those still due); end it after its term.
    Returns "billed", "due", "ended" or "nothing"."""
    now = now or timezone.now()
    outcome = "nothing"
    with transaction.atomic():
        commitment = Commitment.objects.select_for_update(of=("self",)).select_related("model").get(pk=commitment_id)
        if commitment.status == CommitmentStatus.ENDED:
            return outcome
        if now >= commitment.ends_at:
            commitment.status = CommitmentStatus.ENDED
            commitment.save(update_fields=["status"])
            return "ended"
        current = periods.months_between(commitment.starts_at, now)
        _open_month(commitment, current)
        if commitment.payment != CommitmentPayment.MONTHLY or not commitment.monthly_fee_nano:
            return outcome
    for month in range(current + 1):
        charge = CommitmentCharge.objects.filter(commitment_id=commitment_id, month_index=month).first()
        if charge is not None and charge.status == ChargeStatus.PAID:
            continue
        start = periods.add_months(commitment.starts_at, month)
        end = periods.add_months(commitment.starts_at, month + 1)
        try:
            with transaction.atomic():
                if charge is None:
                    _charge(
                        commitment,
                        month_index=month,
                        amount=commitment.monthly_fee_nano,
                        start=start,
                        end=end,
                        actor=None,
                    )
                else:
                    debit = ledger.wallet_debit(
                        organization_id=commitment.organization_id,
                        amount_nano=charge.amount_nano,
                        idempotency_key=f"commitment:{commitment.pk}:month:{month}",
                        actor=None,
                        reason=f"reserved commitment {commitment.pk}, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
                        category="commitment",
                    )
                    CommitmentCharge.objects.filter(pk=charge.pk).update(
                        status=ChargeStatus.PAID,
                        debit_transaction_id=debit.pk,
                        paid_at=now,
                        attempts=charge.attempts + 1,
                    )
                outcome = "billed"
        except InsufficientCredit:
            if charge is None:
                CommitmentCharge.objects.create(
                    commitment=commitment,
                    organization_id=commitment.organization_id,
                    month_index=month,
                    period_start=start,
                    period_end=end,
                    amount_nano=commitment.monthly_fee_nano,
                    status=ChargeStatus.DUE,
                )
            else:
                CommitmentCharge.objects.filter(pk=charge.pk).update(attempts=charge.attempts + 1)
            outcome = "due"
    return outcome


def commitments_bill(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The billing task: every active commitment (opening its month's counter, billing monthly payments)."""
    now = now or timezone.now()
    outcomes: dict[str, int] = {}
    active = Commitment.objects.filter(status=CommitmentStatus.ACTIVE, starts_at__lte=now).order_by("id")
    for commitment_id in active.values_list("id", flat=True)[:limit]:
        outcome = commitment_bill(commitment_id=commitment_id, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
