"""Closing a billing period into an invoice: a resumable state machine per (organization, period).

Each step is its own database transaction and starts by re-reading the invoice under its row lock, so a worker
killed anywhere (or two workers racing) resumes to the same invoice: the period's row is claimed once (a unique
constraint), its lines are written with its totals in one transaction, and its number is given in the
transaction that finalizes it. Running the close again after any step does the remaining steps only.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.invoicing import sql
from billing.invoicing.errors import InvoiceConflict, InvoiceUnbalanced
from billing.invoicing.models import (
    CREDIT_KINDS,
    NANO_PER_MINOR,
    OPEN_STATUSES,
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineKind,
)
from billing.invoicing.periods import period_after, period_containing
from billing.ledger.services import wallet_get_or_create


def minor_round(total_exact_nano: int) -> tuple[int, int]:
    """(total in minor units, carry in nano-units): the total rounded half up (toward +infinity, so half a cent
    becomes a cent) to the currency's minor unit, and the exact total minus the rounded one, in [-half, +half)
    of a minor unit, carried to the next invoice."""
    minor = (total_exact_nano + NANO_PER_MINOR // 2) // NANO_PER_MINOR
    return minor, total_exact_nano - minor * NANO_PER_MINOR


def profile_get(*, organization_id: int) -> BillingProfile:
    """The organization's billing profile (unsaved defaults when staff never set one)."""
    return BillingProfile.objects.filter(organization_id=organization_id).first() or BillingProfile(
        organization_id=organization_id, days_until_due=settings.INVOICE_DAYS_UNTIL_DUE
    )


def period_next(*, organization_id: int) -> tuple[datetime, datetime]:
    """The organization's next period to close: the one after its latest invoice, or the one its wallet was
    opened in."""
    anchor_day = profile_get(organization_id=organization_id).anchor_day
    latest = Invoice.objects.filter(organization_id=organization_id).order_by("-period_start").first()
    if latest is not None:
        return period_after(anchor_day=anchor_day, end=latest.period_end)
    wallet = wallet_get_or_create(organization_id=organization_id)
    return period_containing(anchor_day=anchor_day, at=wallet.created_at)


def invoice_open(
    *, organization_id: int, period_start: datetime, period_end: datetime, progressive: bool = False
) -> Invoice:
    """Step 1: claim the period with an invoice in `closing` (or return the one already there). A progressive
    invoice cuts the running period at `period_end` (see services.progressive); any other waits for its end and
    the grace window."""
    existing = Invoice.objects.filter(organization_id=organization_id, period_start=period_start).first()
    if existing is not None:
        return existing
    grace = settings.INVOICE_PROGRESSIVE_SETTLE_SECONDS if progressive else settings.INVOICE_CLOSE_GRACE_SECONDS
    if period_end + timedelta(seconds=grace) > timezone.now():
        raise InvoiceConflict(
            f"The period {period_start:%Y-%m-%d} to {period_end:%Y-%m-%d} has not ended (with its grace window of "
            f"{settings.INVOICE_CLOSE_GRACE_SECONDS} s for late usage); it is closed after that.",
            param="period",
        )
    earlier = (
        Invoice.objects.filter(organization_id=organization_id, period_start__lt=period_start)
        .order_by("-period_start")
        .first()
    )
    if earlier is not None and earlier.period_end != period_start:
        raise InvoiceConflict(
            f"The period must start where the last one ended ({earlier.period_end:%Y-%m-%d %H:%M} UTC).",
            param="period",
        )
    wallet = wallet_get_or_create(organization_id=organization_id)
    try:
        with transaction.atomic():
            return Invoice.objects.create(
                organization_id=organization_id,
                wallet=wallet,
                currency=wallet.currency,
                period_start=period_start,
                period_end=period_end,
                progressive=progressive,
            )
    except IntegrityError:  # claimed by a concurrent close
        return Invoice.objects.get(organization_id=organization_id, period_start=period_start)


def _previous(invoice: Invoice) -> Invoice | None:
    return (
        Invoice.objects.filter(organization_id=invoice.organization_id, period_start__lt=invoice.period_start)
        .order_by("-period_start")
        .first()
    )


def invoice_aggregate(*, invoice_id: int) -> Invoice:
    """Step 2: the period's lines (aggregated in SQL) and totals, written together; `closing` -> `draft`."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != InvoiceStatus.CLOSING:
            return invoice
        previous = _previous(invoice)
        if previous is not None and previous.status in OPEN_STATUSES:
            raise InvoiceConflict(
                f"The previous period ({previous.period_start:%Y-%m-%d}) is not finalized yet; close it first.",
                param="period",
            )
        carry_in = previous.carry_out_nano if previous is not None and previous.status != InvoiceStatus.VOID else 0
        params: dict[str, Any] = {
            "wallet": invoice.wallet_id,
            "organization": invoice.organization_id,
            "start": invoice.period_start,
            "end": invoice.period_end,
            "invoice": invoice.pk,
            "first_position": 1,
        }
        with connection.cursor() as cursor:
            cursor.execute(sql.LINES_INSERT, params)
            count = cursor.rowcount
            cursor.execute(sql.SPENT, params)
            spent = cursor.fetchone()[0]
            cursor.execute(sql.UNFUNDED, params)
            unfunded = cursor.fetchone()[0]
        if carry_in:
            assert previous is not None
            InvoiceLine.objects.create(
                invoice=invoice,
                position=count + 1,
                kind=LineKind.CARRY,
                description=f"Rounding carried from {previous.number}",
                source="",
                quantity=1,
                unit="item",
                unit_price_nano=carry_in,
                amount_nano=carry_in,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
            )
        lines = InvoiceLine.objects.filter(invoice=invoice)
        credit = lines.filter(kind__in=CREDIT_KINDS).aggregate(s=Sum("amount_nano"))["s"] or 0
        charges = lines.exclude(kind__in=(*CREDIT_KINDS, LineKind.CARRY)).aggregate(s=Sum("amount_nano"))["s"] or 0
        if charges != spent or charges + credit != unfunded:
            # Raising rolls the lines back: the invoice stays `closing` until the ledger and usage agree.
            raise InvoiceUnbalanced(
                f"The period's lines do not add up to its ledger (lines charge {charges} nano, the journal spent "
                f"{spent}; credit applied {-credit}, unfunded {unfunded}); run invoices_reconcile.",
                param="period",
            )
        invoice.charges_nano = charges
        invoice.credit_applied_nano = credit
        invoice.carry_in_nano = carry_in
        invoice.total_exact_nano = charges + credit + carry_in
        invoice.total_minor, invoice.carry_out_nano = minor_round(invoice.total_exact_nano)
        invoice.status = InvoiceStatus.DRAFT
        invoice.drafted_at = timezone.now()
        invoice.save()
        return invoice


def invoice_finalize(*, invoice_id: int) -> Invoice:
    """Step 3: the next gapless number of the issuer's year, given in the transaction that finalizes; `draft` ->
    `finalized`. The sequence row is locked until commit, so numbers are given one at a time, and a rolled-back
    finalization gives its number back."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != InvoiceStatus.DRAFT:
            return invoice
        now = timezone.now()
        issuer = settings.INVOICE_ISSUER
        InvoiceSequence.objects.get_or_create(issuer=issuer, year=now.year)
        sequence = InvoiceSequence.objects.select_for_update().get(issuer=issuer, year=now.year)
        sequence.last_value += 1
        sequence.save(update_fields=["last_value"])
        profile = profile_get(organization_id=invoice.organization_id)
        invoice.issuer = issuer
        invoice.sequence = sequence.last_value
        invoice.number = settings.INVOICE_NUMBER_FORMAT.format(year=now.year, number=sequence.last_value)
        invoice.collection_method = profile.collection_method
        invoice.days_until_due = profile.days_until_due
        invoice.status = InvoiceStatus.FINALIZED
        invoice.finalized_at = now
        invoice.save()
        return invoice


# The steps of a close, in order; each takes the invoice's id and does nothing when its step is done.
CLOSE_STEPS = (invoice_aggregate, invoice_finalize)


def invoice_close(*, organization_id: int, period_start: datetime) -> Invoice:
    """Close the organization's period starting at `period_start` up to a finalized invoice, resuming wherever an
    earlier run stopped. The period must be the next one (or one already claimed) and over, grace included."""
    invoice = Invoice.objects.filter(organization_id=organization_id, period_start=period_start).first()
    if invoice is None:
        start, end = period_next(organization_id=organization_id)
        if start != period_start:
            raise InvoiceConflict(
                f"The next period to close for this organization starts {start:%Y-%m-%d %H:%M} UTC.", param="period"
            )
        invoice = invoice_open(organization_id=organization_id, period_start=start, period_end=end)
    for step in CLOSE_STEPS:
        invoice = step(invoice_id=invoice.pk)
    return invoice


def invoices_close_due(*, organization_id: int, now: datetime | None = None) -> list[Invoice]:
    """Close the organization's periods that ended (grace included), oldest first, resuming a close a crashed
    worker left half done; returns the invoices closed."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.INVOICE_CLOSE_GRACE_SECONDS)
    closed: list[Invoice] = []
    while True:
        stuck = (
            Invoice.objects.filter(organization_id=organization_id, status__in=OPEN_STATUSES)
            .order_by("period_start")
            .first()
        )
        if stuck is not None:
            start = stuck.period_start
        else:
            start, end = period_next(organization_id=organization_id)
            if end > cutoff:
                return closed
        closed.append(invoice_close(organization_id=organization_id, period_start=start))
