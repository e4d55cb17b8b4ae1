"""Reserved commitments: staff define offers, organizations buy them, a task bills the monthly ones and closes
each commitment month (use-or-lose). See models.commitments for the terms.

The monthly fee is ceil(monthly tokens x blended on-demand price x (1 - discount)), in nano-units. Payment is
taken from prepaid credit with `wallet_debit` under a key derived from the commitment and month. A monthly
payment that credit cannot cover when due is recorded as due (still owed: invoicing collects it) and retried;
the commitment's tokens are available regardless, because the organization is bound to pay for them.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from billing.ledger import services as ledger
from billing.ledger.errors import IdempotencyConflict, InsufficientCredit
from billing.ledger.models import JournalTransaction
from billing.ledger.services.journal import key_clean
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
from core.errors import ApplicationError

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


def offer_monthly_fee_nano(offer: CommitmentOffer) -> int:
    """The monthly fee of a purchase of `offer` on its current terms."""
    return commitment_monthly_fee_nano(
        monthly_tokens=offer.monthly_tokens,
        blended_price_micro_per_mtok=offer.blended_price_micro_per_mtok,
        discount_bps=offer.discount_bps,
    )


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


def _offer_audit(offer: CommitmentOffer, action: str, *, actor: Any, before: dict[str, Any] | None) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=f"CommitmentOffer:{offer.pk}",
        target_label=f"commitment offer #{offer.pk} {offer.name}",
        model_slug=offer.model.slug if offer.model else "",
        detail=_offer_detail(offer),
        before=before,
        after=_offer_detail(offer),
    )


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
    _offer_audit(offer, "pricing.commitment_offer.create", actor=actor, before=None)
    return offer


@transaction.atomic
def commitment_offer_update(*, offer_id: int, actor: Any = None, **terms: Any) -> CommitmentOffer:
    """Change an offer. Purchases keep the terms they were bought with; this changes future purchases only."""
    offer = CommitmentOffer.objects.select_for_update(of=("self",)).select_related("model").filter(pk=offer_id).first()
    if offer is None:
        raise PricingNotFound(f"No commitment offer {offer_id}.", param="offer")
    before = _offer_detail(offer)
    for key, value in terms.items():
        if key in OFFER_FIELDS:
            setattr(offer, key, value)
    _offer_check({f: getattr(offer, f) for f in OFFER_FIELDS})
    _full_clean(offer)
    offer.save()
    _offer_audit(offer, "pricing.commitment_offer.update", actor=actor, before=before)
    return offer


def _month_bounds(commitment: Commitment, month_index: int) -> tuple[datetime, datetime]:
    """Start and end of the commitment's month `month_index` (0 is the first)."""
    return (
        periods.add_months(commitment.starts_at, month_index),
        periods.add_months(commitment.starts_at, month_index + 1),
    )


def commitment_fee_debit(*, charge: CommitmentCharge, actor: Any) -> JournalTransaction:
    """Pay one payment of a commitment from credit (see _debit); InsufficientCredit propagates."""
    return _debit(
        charge.commitment,
        month_index=charge.month_index,
        amount=charge.amount_nano,
        start=charge.period_start,
        end=charge.period_end,
        actor=actor,
    )


def _debit(
    commitment: Commitment, *, month_index: int, amount: int, start: datetime, end: datetime, actor: Any
) -> JournalTransaction:
    """Debit one payment from credit, under the key of the commitment's month (the term upfront is month 0), so
    a payment retried is never taken twice; InsufficientCredit propagates."""
    return ledger.wallet_debit(
        organization_id=commitment.organization_id,
        amount_nano=amount,
        idempotency_key=f"commitment:{commitment.pk}:month:{month_index}",
        actor=actor,
        reason=f"reserved commitment {commitment.pk}, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        category="commitment",
    )


def _charge(
    commitment: Commitment, *, month_index: int, amount: int, start: datetime, end: datetime, actor: Any
) -> CommitmentCharge:
    """Collect one payment (the term upfront, or one month) from credit; InsufficientCredit propagates."""
    debit = _debit(commitment, month_index=month_index, amount=amount, start=start, end=end, actor=actor)
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
    start, end = _month_bounds(commitment, month_index)
    counters.counter_open(
        organization_id=commitment.organization_id,
        kind=CounterKind.COMMITMENT,
        owner_id=commitment.pk,
        scope_key=commitment.scope_key,
        period_start=start,
        period_end=end,
        limit_tokens=commitment.monthly_tokens,
    )


def _commitment_create(
    offer: CommitmentOffer,
    organization_id: int,
    starts_at: datetime,
    monthly_fee: int,
    actor: Any,
    idempotency_key: str,
    digest: str,
) -> Commitment:
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
        idempotency_key=idempotency_key,
        request_digest=digest,
        created_by=_user(actor),
    )
    return commitment


@dataclass(frozen=True)
class Purchase:
    commitment: Commitment
    # False when the idempotency key had bought this very commitment before: nothing new was bought or charged.
    created: bool


def _purchase_digest(organization_id: int, offer_id: int, starts_at: datetime | None) -> str:
    """What a purchase asked for (the start as given, None for "now"), to tell a replay from a different request."""
    asked = {"organization": organization_id, "offer": offer_id, "starts_at": starts_at and starts_at.isoformat()}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def _purchase_replay(idempotency_key: str, digest: str) -> Commitment | None:
    bought = Commitment.objects.select_related("model").filter(idempotency_key=idempotency_key).first()
    if bought is not None and bought.request_digest != digest:
        raise IdempotencyConflict(
            f"This idempotency key already bought commitment {bought.pk} with a different organization, offer or "
            "start; send the same request to get that commitment again, or use a new key for a new purchase.",
            param="idempotency_key",
        )
    return bought


def commitment_purchase(
    *, organization_id: int, offer_id: int, actor: Any = None, starts_at: datetime | None = None
) -> Commitment:
    """Buy an offer for an organization (see commitment_purchase_once, without an idempotency key)."""
    return commitment_purchase_once(
        organization_id=organization_id, offer_id=offer_id, actor=actor, starts_at=starts_at
    ).commitment


@transaction.atomic
def commitment_purchase_once(
    *,
    organization_id: int,
    offer_id: int,
    actor: Any = None,
    starts_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> Purchase:
    """Buy an offer for an organization from `starts_at` (now): pays the term (upfront) or the first month from
    credit at once (InsufficientCredit, 402, and nothing is written when credit does not cover it).

    With an idempotency key, a replay of the same request returns the first purchase (created False) however
    much later it comes, and the same key with another organization, offer or start is an IdempotencyConflict
    (409); two requests with one key at once buy once (the key is unique; the second waits, then replays)."""
    now = timezone.now()
    # Commitment months are counted in UTC (billing.pricing.periods): a start given at another offset is the
    # same instant in UTC, so its months and term end are the same whenever and wherever they are computed.
    asked = validation.moment(starts_at, param="starts_at").astimezone(UTC) if starts_at is not None else None
    digest = ""
    if idempotency_key is not None:
        idempotency_key = key_clean(idempotency_key)
        digest = _purchase_digest(organization_id, offer_id, asked)
        replay = _purchase_replay(idempotency_key, digest)
        if replay is not None:
            return Purchase(replay, created=False)
    starts_at = asked or now
    if starts_at < now - timedelta(minutes=5):
        raise ApplicationError("A commitment cannot start in the past.", param="starts_at", code="invalid_value")
    if not Organization.objects.filter(pk=organization_id).exists():
        raise PricingNotFound(f"No organization {organization_id}.", param="organization")
    offer = CommitmentOffer.objects.select_related("model").filter(pk=offer_id).first()
    if offer is None:
        raise PricingNotFound(f"No commitment offer {offer_id}.", param="offer")
    if not offer.is_active:
        raise PricingConflict(f"Commitment offer {offer_id} is no longer offered.", param="offer")
    monthly_fee = offer_monthly_fee_nano(offer)
    try:
        with transaction.atomic():
            commitment = _commitment_create(
                offer, organization_id, starts_at, monthly_fee, actor, idempotency_key or "", digest
            )
    except IntegrityError:
        # The same key, committed by a concurrent request while this one waited on it: that purchase stands.
        replay = _purchase_replay(idempotency_key, digest) if idempotency_key is not None else None
        if replay is None:
            raise
        return Purchase(replay, created=False)
    _open_month(commitment, 0)  # counters before the wallet (lock order)
    if commitment.total_fee_nano:
        if offer.payment == CommitmentPayment.UPFRONT:
            amount, end = commitment.total_fee_nano, commitment.ends_at
        else:
            amount, end = monthly_fee, _month_bounds(commitment, 0)[1]
        _charge(commitment, month_index=0, amount=amount, start=starts_at, end=end, actor=actor)
    detail = {
        "offer": offer.pk,
        "scope": commitment.scope_key,
        "monthly_tokens": commitment.monthly_tokens,
        "monthly_fee_nano": monthly_fee,
        "payment": offer.payment,
        "starts_at": starts_at.isoformat(),
        "ends_at": commitment.ends_at.isoformat(),
    }
    audit_record(
        actor=actor,
        action="pricing.commitment.purchase",
        organization_id=organization_id,
        target=f"Commitment:{commitment.pk}",
        target_label=f"commitment #{commitment.pk} ({offer.name})",
        model_slug=offer.model.slug if offer.model else "",
        detail=detail,
        before=None,
        after=detail,
    )
    return Purchase(commitment, created=True)


def commitment_bill(*, commitment_id: int, now: datetime | None = None) -> str:
    """Bill a monthly commitment's months that have started (and retry those still due); end it after its term.

    Every month of the term is owed: a month still due, or never billed, when the term ends is billed then, and
    an ended commitment keeps being retried until nothing is due. Returns "due" (some payment credit did not
    cover), "billed", "ended" or "nothing"."""
    now = now or timezone.now()
    outcome = "nothing"
    with transaction.atomic():
        commitment = Commitment.objects.select_for_update(of=("self",)).select_related("model").get(pk=commitment_id)
        if commitment.status == CommitmentStatus.ENDED:
            last = commitment.term_months - 1
        elif now >= commitment.ends_at:
            commitment.status = CommitmentStatus.ENDED
            commitment.save(update_fields=["status"])
            outcome, last = "ended", commitment.term_months - 1
        else:
            last = periods.months_between(commitment.starts_at, now)
            _open_month(commitment, last)
        if commitment.payment != CommitmentPayment.MONTHLY or not commitment.monthly_fee_nano:
            return outcome
    owed = CommitmentCharge.objects.filter(commitment_id=commitment_id, month_index__lte=last)
    if owed.filter(Q(status=ChargeStatus.PAID) | Q(invoiced_at__isnull=False)).count() == last + 1:
        return outcome
    results = {_bill_month(commitment, month, now) for month in range(last + 1)}
    for result in ("due", "billed"):
        if result in results:
            return result
    return outcome


def _bill_month(commitment: Commitment, month: int, now: datetime) -> str | None:
    """Collect one month's payment unless it is paid: "billed", "due" (credit short; the month stays due, to be
    retried) or None (already paid).

    Two billing runs may reach the same month at once: the month's row is inserted ON CONFLICT DO NOTHING (the
    unique month index) and then locked, so the second run waits for the first and finds the month paid."""
    start, end = _month_bounds(commitment, month)
    with transaction.atomic():
        CommitmentCharge.objects.bulk_create(
            [
                CommitmentCharge(
                    commitment=commitment,
                    organization_id=commitment.organization_id,
                    month_index=month,
                    period_start=start,
                    period_end=end,
                    amount_nano=commitment.monthly_fee_nano,
                    status=ChargeStatus.DUE,
                    attempts=0,
                )
            ],
            ignore_conflicts=True,
        )
        charge = CommitmentCharge.objects.select_for_update().get(commitment_id=commitment.pk, month_index=month)
        if charge.status == ChargeStatus.PAID or charge.invoiced_at is not None:  # an invoice collects it
            return None
        charge.attempts += 1
        try:
            with transaction.atomic():
                debit = _debit(
                    commitment, month_index=month, amount=charge.amount_nano, start=start, end=end, actor=None
                )
        except InsufficientCredit:
            charge.save(update_fields=["attempts"])
            return "due"
        charge.status, charge.debit_transaction_id, charge.paid_at = ChargeStatus.PAID, debit.pk, now
        charge.save(update_fields=["attempts", "status", "debit_transaction_id", "paid_at"])
        return "billed"


def commitments_bill(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The billing task: every active commitment (opening its month's counter, billing monthly payments), and
    every ended one with a payment still due."""
    now = now or timezone.now()
    outcomes: dict[str, int] = {}
    to_bill = (
        Commitment.objects.filter(
            Q(status=CommitmentStatus.ACTIVE, starts_at__lte=now)
            | Q(
                status=CommitmentStatus.ENDED,
                charges__status=ChargeStatus.DUE,
                charges__invoiced_at__isnull=True,
            )
        )
        .distinct()
        .order_by("id")
    )
    for commitment_id in to_bill.values_list("id", flat=True)[:limit]:
        outcome = commitment_bill(commitment_id=commitment_id, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
