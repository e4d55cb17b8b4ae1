"""Closing a billing period into an invoice: a resumable state machine per (organization, period).

Each step is its own database transaction and starts by re-reading the invoice under its row lock, so a worker
killed anywhere (or two workers racing) resumes to the same invoice: the period's row is claimed once (a unique
constraint), its lines are written with its totals in one transaction, and its number is given in the
transaction that finalizes it. Running the close again after any step does the remaining steps only.
"""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from billing.invoicing import sql
from billing.invoicing.errors import InvoiceConflict, InvoiceUnbalanced
from billing.invoicing.models import (
    CREDIT_KINDS,
    NANO_PER_MINOR,
    OPEN_STATUSES,
    RECORD_KINDS,
    BillingDetails,
    BillingEmailKind,
    BillingProfile,
    DocumentKind,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineKind,
    RollupDay,
)
from billing.invoicing.selectors import billed_to_of, periods_next
from billing.invoicing.services.emails import billing_emails_queue
from billing.invoicing.services.events import invoice_event_emit
from billing.ledger.services import wallet_get_or_create
from billing.pricing.models import Subscription, SubscriptionStatus
from billing.pricing.periods import add_months
from billing.pricing.services import subscription_renew_invoiced
from billing.pricing.services.fees import fees_invoice
from billing.webhooks.models import EventType, WebhookEndpoint
from core.errors import ApplicationError


def minor_round(total_exact_nano: int) -> tuple[int, int]:
    """(total in minor units, carry in nano-units): the total rounded half up (toward +infinity, so half a cent
    becomes a cent) to the currency's minor unit, and the exact total minus the rounded one, in [-half, +half)
    of a minor unit, carried to the next invoice."""
    minor = (total_exact_nano + NANO_PER_MINOR // 2) // NANO_PER_MINOR
    return minor, total_exact_nano - minor * NANO_PER_MINOR


# The periods' invoices (credit notes share their invoice's period, and are no step of a close).
_invoices = Invoice.objects.filter(kind=DocumentKind.INVOICE)


def sequence_locked(*, issuer: str, year: int, kind: str) -> InvoiceSequence:
    """The numbering row of a series, locked until commit (created at its first number)."""
    InvoiceSequence.objects.get_or_create(issuer=issuer, year=year, kind=kind)
    return InvoiceSequence.objects.select_for_update().get(issuer=issuer, year=year, kind=kind)


def profile_get(*, organization_id: int) -> BillingProfile:
    """The organization's billing profile (unsaved defaults when staff never set one)."""
    return BillingProfile.objects.filter(organization_id=organization_id).first() or _profile_default(organization_id)


def _profile_default(organization_id: int | None = None) -> BillingProfile:
    """The defaults (unsaved): the organization's, or, without one, those shared by every organization without a
    profile."""
    profile = BillingProfile(days_until_due=settings.INVOICE_DAYS_UNTIL_DUE)
    if organization_id is not None:
        profile.organization_id = organization_id
    return profile


def period_next(*, organization_id: int) -> tuple[datetime, datetime]:
    """The organization's next period to close: the one after its latest invoice, or the one its wallet was
    opened in (the wallet is opened now if it has none)."""
    wallet_get_or_create(organization_id=organization_id)
    return periods_next(organization_ids=[organization_id])[organization_id]


def invoice_open(
    *, organization_id: int, period_start: datetime, period_end: datetime, progressive: bool = False
) -> Invoice:
    """Step 1: claim the period with an invoice in `closing` (or return the one already there). A progressive
    invoice cuts the running period at `period_end` (see services.progressive); any other waits for its end and
    the grace window."""
    existing = _invoices.filter(organization_id=organization_id, period_start=period_start).first()
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
        _invoices.filter(organization_id=organization_id, period_start__lt=period_start)
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
        return _invoices.get(organization_id=organization_id, period_start=period_start)


def _invoices_open(*, periods: dict[int, tuple[datetime, datetime]]) -> list[int]:
    """Step 1 for many organizations at once, their next periods (from periods_next: contiguous, and over): one
    INSERT claims them all, in each organization's wallet of its currency; a period a concurrent close claimed
    first is kept as it is. Returns the periods' invoice ids."""
    if not periods:
        return []
    # One INSERT ... SELECT FROM unnest(...), each organization's wallet of its currency joined in, every other
    # column at its model default (Django's bulk_create prepares each of the invoice's forty-odd fields for each
    # row: a third of a second per 200 invoices). A period claimed by a concurrent close (the one-per-period
    # constraint) is left as it is.
    defaults = _invoice_defaults()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO invoicing_invoice (organization_id, wallet_id, currency, period_start, period_end, "  # noqa: S608 (column names from the model; every value is a parameter)
            f"{', '.join(defaults)}) "
            f"SELECT w.organization_id, w.id, w.currency, v.period_start, v.period_end, "
            f"{', '.join(['%s'] * len(defaults))} "
            "FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(organization_id, period_start, "
            "period_end) "
            "JOIN accounts_organization o ON o.id = v.organization_id "
            "JOIN ledger_wallet w ON w.organization_id = o.id AND w.currency = o.currency "
            "ON CONFLICT DO NOTHING RETURNING id",
            [
                *defaults.values(),
                list(periods),
                [start for start, _ in periods.values()],
                [end for _, end in periods.values()],
            ],
        )
        inserted = [pk for (pk,) in cursor.fetchall()]
    if len(inserted) == len(periods):
        return inserted
    # A period claimed by a concurrent close (or an organization with no wallet of its currency): the invoices that
    # hold the periods, whoever inserted them.
    claimed = Invoice.objects.filter(
        organization_id__any=periods, period_start__any={start for start, _ in periods.values()}
    ).values_list("id", "organization_id", "period_start")
    return [pk for pk, organization_id, start in claimed if periods[organization_id][0] == start]


def _invoice_defaults() -> dict[str, Any]:
    """The columns of a new invoice other than its organization, wallet, currency and period, each with its model
    default as the database stores it (the id and created_at are left to the database)."""
    given = {"id", "organization_id", "wallet_id", "currency", "period_start", "period_end", "created_at"}
    return {
        str(field.column): field.get_db_prep_save(field.get_default(), connection)
        for field in Invoice._meta.concrete_fields
        if field.column not in given
    }


def invoices_aggregate(*, invoice_ids: list[int]) -> dict[int, ApplicationError]:
    """Step 2, for any number of invoices at once (a whole day's closes in one statement): their lines, aggregated
    in SQL, and their totals, written together in one transaction; `closing` -> `draft`. Returns the invoices that
    stay `closing`, with why: an earlier period not finalized yet, or lines that do not add up to the ledger (their
    lines are not kept). Invoices already past this step are left alone."""
    refused: dict[int, ApplicationError] = {}
    _renewals_invoice(invoice_ids=invoice_ids)
    with transaction.atomic():
        invoices = list(
            Invoice.objects.select_for_update()
            .filter(pk__any=invoice_ids, status=InvoiceStatus.CLOSING)
            .only(*AGGREGATE_FIELDS)  # the rest are written by sql.DRAFTS_SET (a thousand full rows: a second)
            .order_by("pk")
        )
        if not invoices:
            return refused
        # Each invoice's previous one ends where it starts (invoice_open keeps periods contiguous).
        previous = {
            (p.organization_id, p.period_end): p
            for p in _invoices.filter(
                organization_id__any={i.organization_id for i in invoices},
                period_end__any={i.period_start for i in invoices},
            ).only("organization_id", "period_start", "period_end", "status", "carry_out_nano", "number")
        }
        ready = []
        for invoice in invoices:
            before = previous.get((invoice.organization_id, invoice.period_start))
            if before is not None and before.status in OPEN_STATUSES:
                refused[invoice.pk] = InvoiceConflict(
                    f"The previous period ({before.period_start:%Y-%m-%d}) is not finalized yet; close it first.",
                    param="period",
                )
                continue
            invoice.carry_in_nano = before.carry_out_nano if before and before.status != InvoiceStatus.VOID else 0
            invoice.carry_from = before.number if before is not None else ""  # type: ignore[attr-defined]
            ready.append(invoice)
        params = {
            "invoices": [invoice.pk for invoice in ready],
            "credit_kinds": [str(kind) for kind in CREDIT_KINDS],
            "record_kinds": [str(kind) for kind in RECORD_KINDS],
            **_stretches(ready),
        }
        with connection.cursor() as cursor:
            # A batch groups a few hundred thousand rating lines: in memory, for this transaction only.
            cursor.execute(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'")
            cursor.execute(sql.LINES_INSERT, params)
            written = {row[0]: row[1:] for row in cursor.fetchall()}
        carries, drafted, now = [], [], timezone.now()
        for invoice in ready:
            # The fees credit could not pay (invoiced) are charged here before the ledger books them (at payment).
            spent, unfunded, count, charges, credit, invoiced = written[invoice.pk]
            if charges != spent + invoiced or charges + credit != unfunded + invoiced:
                refused[invoice.pk] = InvoiceUnbalanced(
                    f"The period's lines do not add up to its ledger (lines charge {charges} nano, the journal "
                    f"spent {spent} and fees invoiced {invoiced}; credit applied {-credit}, unfunded {unfunded}); "
                    "run invoices_reconcile.",
                    param="period",
                )
                continue
            if invoice.carry_in_nano:
                carries.append(
                    InvoiceLine(
                        invoice=invoice,
                        position=count + 1,
                        kind=LineKind.CARRY,
                        description=f"Rounding carried from {invoice.carry_from}",  # type: ignore[attr-defined]
                        quantity=1,
                        unit="item",
                        unit_price_nano=invoice.carry_in_nano,
                        amount_nano=invoice.carry_in_nano,
                        period_start=invoice.period_start,
                        period_end=invoice.period_end,
                    )
                )
            invoice.charges_nano = charges
            invoice.credit_applied_nano = credit
            invoice.total_exact_nano = charges + credit + invoice.carry_in_nano
            invoice.total_minor, invoice.carry_out_nano = minor_round(invoice.total_exact_nano)
            drafted.append(invoice)
        # The lines of an invoice that does not add up are not kept: it stays `closing` until the books agree.
        InvoiceLine.objects.filter(invoice_id__any=[pk for pk in refused if pk in params["invoices"]]).delete()
        InvoiceLine.objects.bulk_create(carries)
        columns = {name: [getattr(invoice, field) for invoice in drafted] for name, field in DRAFT_COLUMNS.items()}
        with connection.cursor() as cursor:
            cursor.execute(sql.DRAFTS_SET, {"now": now, **columns})
        fees_invoice(
            fee_refs=list(
                InvoiceLine.objects.filter(invoice_id__any=[invoice.pk for invoice in drafted])
                .exclude(fee_ref="")
                .values_list("fee_ref", flat=True)
            ),
            now=now,
        )
    return refused


def _stretches(invoices: list[Invoice]) -> dict[str, Any]:
    """sql.LINES_INSERT's parameters for where each invoice's pieces come from: the days of its period a daily
    rollup covers (whole UTC days inside the period, rolled up: read from DailyRollup), and the stretches between
    them (read from the ledger); or, for a whole calendar month whose days are all rolled up, the month's sums of
    them (MonthRollup). The days are read here once, so a day rolled up while the statement runs is read from the
    ledger, never from both (and a month whose days were all rolled up here gets no more of them)."""
    stretches: dict[str, Any] = {
        "raw_invoices": [],
        "raw_starts": [],
        "raw_ends": [],
        "rolled_days": [],
        "month_invoices": [],
    }
    if not invoices:
        return {**stretches, "lo": None, "hi": None, "wallets": []}
    days = list(
        RollupDay.objects.filter(
            day__gte=min(i.period_start for i in invoices).astimezone(UTC).date(),
            day__lt=max(i.period_end for i in invoices).astimezone(UTC).date(),
        ).values_list("day", "month_added")
    )
    rolled = {day for day, _ in days}
    not_in_month = {day for day, month_added in days if not month_added}
    # The statement reads, for each invoice, these of its days wholly inside its period from DailyRollup.
    stretches["rolled_days"] = sorted(rolled)
    # A batch's invoices nearly always share one period: its stretches are worked out once, and whether it is read
    # from its month's sums (a calendar month with every day rolled up and added to them).
    by_period: dict[tuple[datetime, datetime], tuple[list[tuple[datetime, datetime]], bool]] = {}
    for invoice in invoices:
        period = (invoice.period_start, invoice.period_end)
        if period not in by_period:
            raw = _raw_stretches(*period, rolled=rolled)
            whole_month = not raw and _calendar_month(*period) and not_in_month.isdisjoint(_whole_days(*period))
            by_period[period] = (raw, whole_month)
        raw, whole_month = by_period[period]
        if whole_month:
            stretches["month_invoices"].append(invoice.pk)
        for start, end in raw:
            stretches["raw_invoices"].append(invoice.pk)
            stretches["raw_starts"].append(start)
            stretches["raw_ends"].append(end)
    # The bounds of every stretch read from the ledger (nothing is read when there is none).
    stretches["lo"] = min(stretches["raw_starts"], default=invoices[0].period_start)
    stretches["hi"] = max(stretches["raw_ends"], default=invoices[0].period_start)
    stretches["wallets"] = sorted({invoice.wallet_id for invoice in invoices})
    return stretches


def _raw_stretches(
    period_start: datetime, period_end: datetime, *, rolled: set[date]
) -> list[tuple[datetime, datetime]]:
    """The stretches [start, end) of the period between its rolled-up days, in order."""
    raw = []
    cursor = period_start
    for day in _whole_days(period_start, period_end):
        if day not in rolled:
            continue
        day_start = datetime.combine(day, time.min, tzinfo=UTC)
        if cursor < day_start:
            raw.append((cursor, day_start))
        cursor = day_start + timedelta(days=1)
    if cursor < period_end:
        raw.append((cursor, period_end))
    return raw


def _calendar_month(start: datetime, end: datetime) -> bool:
    """Whether [start, end) is one calendar month, UTC."""
    start = start.astimezone(UTC)
    return start.day == 1 and start.time() == time.min and end == add_months(start, 1)


def _whole_days(start: datetime, end: datetime) -> Iterator[date]:
    """The UTC days wholly inside [start, end), in order."""
    start = start.astimezone(UTC)
    day = start.date() if start.time() == time.min else start.date() + timedelta(days=1)
    while datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=1) <= end:
        yield day
        day += timedelta(days=1)


def _renewals_invoice(*, invoice_ids: list[int]) -> None:
    """Before the lines: each plan renewal credit could not pay (its subscription past due) that starts before the
    end of the invoice's period is renewed with its fee left to the invoice (the plan stays in force while it is
    collected). Its own transaction per subscription: a close resumed after it finds the fee invoiced-to-be."""
    # Asked of the few past-due subscriptions, not of the batch's thousand invoices.
    renewal_due = Invoice.objects.filter(
        pk__any=invoice_ids,
        status=InvoiceStatus.CLOSING,
        organization_id=OuterRef("organization_id"),
        period_end__gt=OuterRef("current_period_end"),
    )
    past_due = Subscription.objects.filter(Exists(renewal_due), status=SubscriptionStatus.PAST_DUE)
    for subscription_id in past_due.values_list("id", flat=True):
        subscription_renew_invoiced(subscription_id=subscription_id)


AGGREGATE_WORK_MEM = "256MB"
# The fields of the finalized invoices invoices_close_due returns, loaded (any other is read on use).
CLOSED_FIELDS = (
    "id",
    "organization_id",
    "status",
    "charges_nano",
    "total_minor",
    "number",
    "period_start",
    "period_end",
)
# The fields of a closing invoice the aggregation reads.
AGGREGATE_FIELDS = ("id", "organization_id", "wallet_id", "period_start", "period_end", "status")
# sql.DRAFTS_SET's arrays and the invoice fields they are read from.
DRAFT_COLUMNS = {
    "ids": "pk",
    "charges": "charges_nano",
    "credit": "credit_applied_nano",
    "carry_in": "carry_in_nano",
    "total_exact": "total_exact_nano",
    "total_minor": "total_minor",
    "carry_out": "carry_out_nano",
}


def invoice_aggregate(*, invoice_id: int) -> Invoice:
    """Step 2 for one invoice (see invoices_aggregate); raises why it cannot be built."""
    refused = invoices_aggregate(invoice_ids=[invoice_id])
    if invoice_id in refused:
        raise refused[invoice_id]
    return Invoice.objects.get(pk=invoice_id)


def invoices_finalize(*, invoice_ids: list[int]) -> None:
    """Step 3, for any number of invoices at once: the issuer's next gapless numbers (of this year), given in the
    transaction that finalizes them; `draft` -> `finalized`. The sequence row is locked until commit, so numbers
    are given one transaction at a time, and a rolled-back finalization gives its numbers back."""
    with transaction.atomic():
        # (id, organization, charges, total) of each: the rest is written by sql.FINALIZE_SET, or read back for the
        # events below (a thousand model instances cost more than the statement).
        drafts = list(
            Invoice.objects.select_for_update()
            .filter(pk__any=invoice_ids, status=InvoiceStatus.DRAFT)
            .order_by("pk")
            .values_list("id", "organization_id", "charges_nano", "total_minor")
        )
        if not drafts:
            return
        now = timezone.now()
        issuer = settings.INVOICE_ISSUER
        sequence = sequence_locked(issuer=issuer, year=now.year, kind=DocumentKind.INVOICE)
        organization_ids = {organization_id for _, organization_id, _, _ in drafts}
        profiles = {p.organization_id: p for p in BillingProfile.objects.filter(organization_id__any=organization_ids)}
        details = {d.organization_id: d for d in BillingDetails.objects.filter(organization_id__any=organization_ids)}
        default = _profile_default()  # for every organization staff never set a profile for
        profile_of = [profiles.get(organization_id, default) for _, organization_id, _, _ in drafts]
        # The next numbers of the series, in the order of the ids.
        sequences = list(range(sequence.last_value + 1, sequence.last_value + 1 + len(drafts)))
        sequence.last_value = sequences[-1]
        sequence.save(update_fields=["last_value"])
        with connection.cursor() as cursor:
            cursor.execute(
                sql.FINALIZE_SET,
                {
                    "now": now,
                    "issuer": issuer,
                    "ids": [pk for pk, _, _, _ in drafts],
                    "sequences": sequences,
                    "numbers": [settings.INVOICE_NUMBER_FORMAT.format(year=now.year, number=n) for n in sequences],
                    "methods": [profile.collection_method for profile in profile_of],
                    "days": [profile.days_until_due for profile in profile_of],
                    # Who it is addressed to, as of now: frozen with the invoice (a later edit reaches the next one).
                    "billed_to": [
                        json.dumps(billed_to_of(details.get(organization_id))) for _, organization_id, _, _ in drafts
                    ],
                },
            )
        # An invoice of a period with nothing charged (no usage, no fee) is kept, but nobody is emailed about it.
        billing_emails_queue(
            kind=BillingEmailKind.INVOICE_ISSUED,
            objects={pk: organization_id for pk, organization_id, charges, total in drafts if charges or total},
        )
        # Only the organizations with an endpoint listening are looked at one by one.
        listening = set(
            WebhookEndpoint.objects.filter(
                organization_id__any=organization_ids, enabled=True, event_types__contains=[EventType.INVOICE_ISSUED]
            ).values_list("organization_id", flat=True)
        )
        # Read back whole (the event carries most fields) for the few organizations that listen.
        emitted = Invoice.objects.filter(
            pk__any=[pk for pk, organization_id, _, _ in drafts if organization_id in listening]
        )
        for invoice in emitted.order_by("pk"):
            invoice_event_emit(
                invoice=invoice, event_type=EventType.INVOICE_ISSUED, idempotency_key=f"invoice.issued:{invoice.pk}"
            )


def invoice_finalize(*, invoice_id: int) -> Invoice:
    """Step 3 for one invoice (see invoices_finalize)."""
    invoices_finalize(invoice_ids=[invoice_id])
    return Invoice.objects.get(pk=invoice_id)


# The steps of a close, in order; each takes the invoice's id and does nothing when its step is done.
CLOSE_STEPS = (invoice_aggregate, invoice_finalize)


def invoice_close(*, organization_id: int, period_start: datetime) -> Invoice:
    """Close the organization's period starting at `period_start` up to a finalized invoice, resuming wherever an
    earlier run stopped. The period must be the next one (or one already claimed) and over, grace included."""
    invoice = _invoices.filter(organization_id=organization_id, period_start=period_start).first()
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


def invoices_close_due(*, organization_ids: list[int], now: datetime | None = None) -> list[Invoice]:
    """Close the organizations' periods that ended (grace included), all of them together step by step (one
    statement aggregates every invoice of a step), oldest periods first, resuming closes a crashed worker left
    half done; returns the invoices finalized. An organization whose invoice cannot be built (see
    invoices_aggregate) is left `closing` and skipped; the others go on."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.INVOICE_CLOSE_GRACE_SECONDS)
    closed: list[Invoice] = []
    stuck_orgs: set[int] = set()
    pending = set(organization_ids)
    for _ in range(MAX_PERIODS_PER_RUN):
        if not pending:
            break
        open_rows = list(
            _invoices.filter(organization_id__any=pending, status__in=OPEN_STATUSES).values_list(
                "id", "organization_id"
            )
        )
        open_ids = [pk for pk, _ in open_rows]
        busy = {organization_id for _, organization_id in open_rows}
        ended = {
            organization_id: period
            for organization_id, period in periods_next(organization_ids=list(pending - busy)).items()
            if period[1] <= cutoff
        }
        open_ids += _invoices_open(periods=ended)
        if not open_ids:
            break
        refused = invoices_aggregate(invoice_ids=open_ids)
        stuck_orgs |= set(Invoice.objects.filter(pk__any=refused).values_list("organization_id", flat=True))
        invoices_finalize(invoice_ids=open_ids)
        finalized = list(
            Invoice.objects.filter(pk__any=open_ids, status=InvoiceStatus.FINALIZED).only(*CLOSED_FIELDS).order_by("pk")
        )
        closed += finalized
        # Another period can be over only for an organization that just closed one (the others had none over, or
        # are stuck), and only if a UTC midnight after its end has passed: every period ends on one (its anchor
        # day's), after it starts. So a batch that closed last month's periods is done without asking again.
        pending = {
            invoice.organization_id for invoice in finalized if _midnight_after(invoice.period_end) <= cutoff
        } - stuck_orgs
    return closed


def _midnight_after(moment: datetime) -> datetime:
    """The first UTC midnight strictly after `moment`."""
    return datetime.combine(moment.astimezone(UTC).date() + timedelta(days=1), time.min, tzinfo=UTC)


# Periods one run catches up at most per organization (an organization months behind catches up over runs).
MAX_PERIODS_PER_RUN = 24
