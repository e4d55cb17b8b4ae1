"""Reads of invoices, and the reconcile check that every invoice agrees with the ledger it was built from."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import BigIntegerField, F, Func, Max, Min, Q, QuerySet, Sum, Value
from django.utils import timezone

from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import (
    NANO_PER_MINOR,
    OPEN_STATUSES,
    PIECE_KEY,
    BillingDetails,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    MonthRollup,
    Suspension,
)
from billing.invoicing.periods import period_after, period_containing
from billing.ledger.models import Wallet
from billing.notifications.selectors import notice_recipients


def invoices_list(
    *,
    organization_id: int | None = None,
    status: str | None = None,
    kind: str | None = None,
    period_start: datetime | None = None,
) -> QuerySet[Invoice]:
    """Invoices and credit notes, newest period first; `period_start`: the documents of periods starting in that
    month (an organization's period may start on its anchor day)."""
    invoices = Invoice.objects.all()
    if organization_id is not None:
        invoices = invoices.filter(organization_id=organization_id)
    if status is not None:
        invoices = invoices.filter(status=status)
    if kind is not None:
        invoices = invoices.filter(kind=kind)
    if period_start is not None:
        invoices = invoices.filter(period_start__year=period_start.year, period_start__month=period_start.month)
    return invoices.order_by("-period_start", "-id")


def amount_due_minor(*, invoice: Invoice) -> int:
    """What the invoice still asks for, in minor units: its total less its credit notes (never below zero); nothing
    unless it is finalized or uncollectible (a draft asks nothing yet, a paid or void one nothing more)."""
    if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
        return 0
    notes = Invoice.objects.filter(corrects=invoice, status=InvoiceStatus.ISSUED)
    credited = notes.aggregate(total=Sum("total_minor"))["total"] or 0
    return max(0, invoice.total_minor + credited)


def credit_notes_of(*, invoice_id: int) -> QuerySet[Invoice]:
    return Invoice.objects.filter(corrects_id=invoice_id, status=InvoiceStatus.ISSUED).order_by("id")


def credited_by_line(*, invoice_id: int) -> dict[int, int]:
    """How much of each line of the invoice its credit notes reversed so far (the line's sign), by line id."""
    rows = (
        InvoiceLine.objects.filter(reverses__invoice_id=invoice_id, invoice__status=InvoiceStatus.ISSUED)
        .values("reverses_id")
        .annotate(reversed=Sum("amount_nano"))
    )
    return {row["reverses_id"]: -row["reversed"] for row in rows}


def invoice_get(*, invoice_id: int) -> Invoice:
    invoice = Invoice.objects.filter(pk=invoice_id).first()
    if invoice is None:
        raise InvoiceNotFound(f"No invoice {invoice_id}.", param="invoice")
    return invoice


def billing_details_get(*, organization_id: int) -> BillingDetails | None:
    return BillingDetails.objects.filter(organization_id=organization_id).first()


def billing_recipients(*, organization_id: int) -> list[str]:
    """Where invoices and payment emails go: the organization's billing emails, else its owners and billing
    admins."""
    emails = BillingDetails.objects.filter(organization_id=organization_id).values_list("emails", flat=True).first()
    return list(emails) if emails else notice_recipients(organization_id=organization_id)


def billed_to_of(details: BillingDetails | None) -> dict[str, Any]:
    """The billed-to snapshot of an invoice ({} without billing details)."""
    if details is None:
        return {}
    return {
        "legal_name": details.legal_name,
        "address": {
            "line1": details.address_line1,
            "line2": details.address_line2,
            "city": details.city,
            "postal_code": details.postal_code,
            "region": details.region,
            "country": details.country,
        },
        "tax_id": {"type": details.tax_id_type, "value": details.tax_id_value} if details.tax_id_type else None,
        "emails": list(details.emails),
    }


def suspension_of(*, organization_id: int) -> Suspension | None:
    """The organization's open suspension of postpaid use, with the unpaid invoice it is for (None: not
    suspended). Read when a call is refused for credit, to name the invoice."""
    return (
        Suspension.objects.select_related("invoice")
        .filter(organization_id=organization_id, lifted_at__isnull=True)
        .first()
    )


def invoice_in_dunning(*, organization_id: int) -> Invoice | None:
    """The organization's oldest invoice whose payment failed and is still unpaid (the web UI's banner), with
    `suspended` set when its postpaid use is suspended."""
    invoice = (
        Invoice.objects.filter(
            organization_id=organization_id, status=InvoiceStatus.FINALIZED, payment_failed_at__isnull=False
        )
        .order_by("payment_failed_at")
        .first()
    )
    if invoice is not None:
        invoice.suspended = Suspension.objects.filter(  # type: ignore[attr-defined]
            organization_id=organization_id, lifted_at__isnull=True
        ).exists()
    return invoice


def _traced(field: str, what: str) -> Func:
    return Func(
        F(field), F("rollup_ids"), Value(what), function="invoicing_traced", output_field=ArrayField(BigIntegerField())
    )


# A line's whole trace: the ids it names itself and those its daily rollup rows name (see InvoiceLine.rollup_ids).
LINE_TRACED = {
    "traced_usage_ids": _traced("usage_ids", "usage"),
    "traced_transaction_ids": _traced("transaction_ids", "transaction"),
    "traced_draw_ids": _traced("draw_ids", "draw"),
}


def lines_traced(lines: QuerySet[InvoiceLine]) -> QuerySet[InvoiceLine]:
    """The lines with their whole trace as traced_usage_ids, traced_transaction_ids and traced_draw_ids."""
    return lines.annotate(**LINE_TRACED)


def invoice_lines(*, invoice_id: int) -> QuerySet[InvoiceLine]:
    lines = InvoiceLine.objects.filter(invoice_id=invoice_id).select_related("model").order_by("position")
    return lines_traced(lines)


# Every check below returns one row per problem: (invoice id, line position or NULL, what is wrong). Only invoices
# past `closing` are checked (a `closing` invoice has no lines yet, or ones being written). A problem of no invoice
# (a month rollup's) has a NULL invoice id, and its sentence names what it is about.

_CHARGE_LINES = """
SELECT l.invoice_id, l.position, 'amount ' || l.amount_nano || ' is not its transactions'' spent '
       || coalesce(sum(e.amount_nano), 0)
  FROM invoicing_invoiceline l
  LEFT JOIN LATERAL unnest(invoicing_traced(l.transaction_ids, l.rollup_ids, 'transaction')) AS tid ON true
  LEFT JOIN ledger_journalentry e ON e.transaction_id = tid AND e.account = 'spent'
 WHERE l.invoice_id IN (SELECT id FROM invoicing_invoice
                         WHERE organization_id = %(org)s AND status <> 'closing' AND kind = 'invoice')
   AND l.kind IN ('plan_fee', 'commitment_fee', 'tier_trueup', 'charge') AND l.fee_ref = ''
 GROUP BY l.id HAVING l.amount_nano <> coalesce(sum(e.amount_nano), 0)
"""

# A fee credit could not pay (billing.pricing.services.fees): the line is the fee, and once the invoice is paid, the
# debit that paid it out of the payment.
_FEE_LINES = """
WITH fee AS (
    SELECT l.invoice_id, l.position, l.amount_nano, i.status, coalesce(p.fee_nano, c.amount_nano) AS fee,
           coalesce(p.debit_transaction_id, c.debit_transaction_id) AS debit_id
      FROM invoicing_invoiceline l JOIN invoicing_invoice i ON i.id = l.invoice_id
      LEFT JOIN pricing_subscriptionperiod p
        ON l.fee_ref = 'subscription_period:' || p.id AND p.invoiced_at IS NOT NULL
      LEFT JOIN pricing_commitmentcharge c
        ON l.fee_ref = 'commitment_charge:' || c.id AND c.invoiced_at IS NOT NULL
     WHERE i.organization_id = %(org)s AND i.status <> 'closing' AND l.fee_ref <> ''
)
SELECT f.invoice_id, f.position, CASE
           WHEN f.fee IS DISTINCT FROM f.amount_nano THEN 'amount ' || f.amount_nano || ' is not its fee ' || f.fee
           WHEN f.debit_id IS NULL THEN 'the invoice is paid but its fee is not'
           ELSE 'amount ' || f.amount_nano || ' is not its debit''s spent ' || coalesce(e.amount_nano, 0) END
  FROM fee f LEFT JOIN ledger_journalentry e ON e.transaction_id = f.debit_id AND e.account = 'spent'
 WHERE f.fee IS DISTINCT FROM f.amount_nano
    OR (f.debit_id IS NULL AND f.status = 'paid')
    OR (f.debit_id IS NOT NULL AND e.amount_nano IS DISTINCT FROM f.amount_nano)
"""

_TRUEUP_LINES = """
SELECT l.invoice_id, l.position, 'amount ' || l.amount_nano || ' is not its grants'' refund credit '
       || -coalesce(sum(e.amount_nano), 0)
  FROM invoicing_invoiceline l
  LEFT JOIN LATERAL unnest(invoicing_traced(l.transaction_ids, l.rollup_ids, 'transaction')) AS tid ON true
  LEFT JOIN ledger_journalentry e ON e.transaction_id = tid AND e.account = 'funding_refund'
 WHERE l.invoice_id IN (SELECT id FROM invoicing_invoice WHERE organization_id = %(org)s AND status <> 'closing')
   AND l.kind = 'tier_trueup_credit'
 GROUP BY l.id HAVING l.amount_nano <> coalesce(sum(e.amount_nano), 0)
"""

_RECORD_LINES = """
SELECT l.invoice_id, l.position, 'amount ' || l.amount_nano || ' is not minus its transactions'' refunded '
       || coalesce(sum(e.amount_nano), 0)
  FROM invoicing_invoiceline l
  LEFT JOIN LATERAL unnest(invoicing_traced(l.transaction_ids, l.rollup_ids, 'transaction')) AS tid ON true
  LEFT JOIN ledger_journalentry e ON e.transaction_id = tid AND e.account = 'refunded'
 WHERE l.invoice_id IN (SELECT id FROM invoicing_invoice
                         WHERE organization_id = %(org)s AND status <> 'closing' AND kind = 'invoice')
   AND l.kind IN ('refund', 'dispute')
 GROUP BY l.id HAVING l.amount_nano <> -coalesce(sum(e.amount_nano), 0)
"""

_CREDIT_LINES = """
SELECT l.invoice_id, l.position, 'amount ' || l.amount_nano || ' is not minus its draws '
       || coalesce(sum(d.amount_nano), 0) || ' of ' || l.source || ' grants'
  FROM invoicing_invoiceline l
  LEFT JOIN LATERAL unnest(invoicing_traced(l.draw_ids, l.rollup_ids, 'draw')) AS did ON true
  LEFT JOIN ledger_grantdraw d ON d.id = did
  LEFT JOIN ledger_grant g ON g.id = d.grant_id AND g.kind = l.source
 WHERE l.invoice_id IN (SELECT id FROM invoicing_invoice
                         WHERE organization_id = %(org)s AND status <> 'closing' AND kind = 'invoice')
   AND l.kind LIKE 'credit_%%'
 GROUP BY l.id HAVING l.amount_nano <> -coalesce(sum(d.amount_nano), 0) OR count(d.id) <> count(g.id)
"""

_USAGE_LINES = """
SELECT l.invoice_id, l.position, 'amount ' || l.amount_nano || ' is not its usage records'' '
       || coalesce(sum((x->>'amount_nano')::bigint), 0)
  FROM invoicing_invoiceline l
  LEFT JOIN LATERAL unnest(invoicing_traced(l.usage_ids, l.rollup_ids, 'usage')) AS uid ON true
  LEFT JOIN usage_usagerecord u ON u.id = uid AND u.model_id = l.model_id AND u.service_tier = l.service_tier
  LEFT JOIN LATERAL jsonb_array_elements(u.lines) AS x
         ON x->>'kind' = l.token_kind AND x->>'source' = l.source
        AND nullif(x->>'price_version_id', '')::bigint IS NOT DISTINCT FROM l.price_version_id
        AND (l.rate_micro_per_mtok IS NULL OR coalesce((x->>'rate_micro_per_mtok')::bigint, 0) = l.rate_micro_per_mtok)
        AND (l.factor_bps IS NULL OR coalesce((x->>'factor_bps')::bigint, 10000) = l.factor_bps)
        AND (l.discount_bps IS NULL OR coalesce((x->>'discount_bps')::bigint, 0) = l.discount_bps)
 WHERE l.invoice_id IN (SELECT id FROM invoicing_invoice
                         WHERE organization_id = %(org)s AND status <> 'closing' AND kind = 'invoice')
   AND l.kind = 'usage'
 GROUP BY l.id HAVING l.amount_nano <> coalesce(sum((x->>'amount_nano')::bigint), 0)
"""

_TOTALS = """
SELECT i.id, NULL::int, 'totals do not add up to the lines'
  FROM invoicing_invoice i
  LEFT JOIN invoicing_invoiceline l ON l.invoice_id = i.id
 WHERE i.organization_id = %(org)s AND i.status <> 'closing' AND i.kind = 'invoice'
 GROUP BY i.id
HAVING i.charges_nano <> coalesce(
           sum(l.amount_nano)
               FILTER (WHERE l.kind NOT LIKE 'credit_%%' AND l.kind NOT IN (
                   'carry', 'refund', 'dispute', 'tier_trueup_credit', 'commitment_shortfall'
               )),
           0
       )
    OR i.credit_applied_nano <> coalesce(sum(l.amount_nano) FILTER (WHERE l.kind LIKE 'credit_%%'), 0)
    OR i.carry_in_nano <> coalesce(sum(l.amount_nano) FILTER (WHERE l.kind = 'carry'), 0)
"""

# The period's charges (journal transactions with a spent leg, by the ledger's clock) against the transactions the
# lines name (directly, or through their usage records): each charge must be on its period's invoice, once. A debit
# that paid an invoiced fee is on that fee's line (checked by _FEE_LINES), not in the period it was booked in.
_COVERAGE = """
WITH inv AS (
    SELECT id, wallet_id, period_start, period_end FROM invoicing_invoice
     WHERE organization_id = %(org)s AND status <> 'closing' AND kind = 'invoice'
),
settled_fees AS (
    SELECT debit_transaction_id FROM pricing_subscriptionperiod
     WHERE invoiced_at IS NOT NULL AND debit_transaction_id IS NOT NULL
    UNION ALL
    SELECT debit_transaction_id FROM pricing_commitmentcharge
     WHERE invoiced_at IS NOT NULL AND debit_transaction_id IS NOT NULL
),
spent AS (
    SELECT i.id AS invoice_id, t.id AS txn_id
      FROM inv i
      JOIN ledger_journaltransaction t
        ON t.wallet_id = i.wallet_id AND t.created_at >= i.period_start AND t.created_at < i.period_end
      JOIN ledger_journalentry e ON e.transaction_id = t.id AND e.account = 'spent'
     WHERE t.id NOT IN (SELECT debit_transaction_id FROM settled_fees)
),
usage_of AS (
    SELECT DISTINCT l.invoice_id, uid
      FROM invoicing_invoiceline l
     CROSS JOIN LATERAL unnest(invoicing_traced(l.usage_ids, l.rollup_ids, 'usage')) AS uid
     WHERE l.invoice_id IN (SELECT id FROM inv)
),
listed AS (
    SELECT l.invoice_id, tid AS txn_id
      FROM invoicing_invoiceline l
     CROSS JOIN LATERAL unnest(invoicing_traced(l.transaction_ids, l.rollup_ids, 'transaction')) AS tid
     WHERE l.invoice_id IN (SELECT id FROM inv)
    UNION ALL
    SELECT uo.invoice_id, t.id
      FROM usage_of uo JOIN usage_usagerecord u ON u.id = uo.uid
      JOIN ledger_journaltransaction t ON t.hold_id = u.hold_id AND t.kind <> 'hold'
    UNION ALL
    SELECT uo.invoice_id, t.id
      FROM usage_of uo JOIN usage_usagerecord u ON u.id = uo.uid AND u.hold_id IS NULL
      JOIN ledger_journaltransaction t ON t.idempotency_key = 'debit:' || u.request_id
),
listed_charges AS (
    SELECT DISTINCT l.invoice_id, l.txn_id FROM listed l
     WHERE EXISTS (SELECT 1 FROM ledger_journalentry e WHERE e.transaction_id = l.txn_id AND e.account = 'spent')
)
SELECT s.invoice_id, NULL::int, 'charge transaction ' || s.txn_id || ' of the period is on no line'
  FROM spent s
 WHERE NOT EXISTS (SELECT 1 FROM listed_charges l WHERE l.invoice_id = s.invoice_id AND l.txn_id = s.txn_id)
UNION ALL
SELECT l.invoice_id, NULL::int, 'transaction ' || l.txn_id || ' is not a charge of the period'
  FROM listed_charges l
 WHERE NOT EXISTS (SELECT 1 FROM spent s WHERE s.invoice_id = l.invoice_id AND s.txn_id = l.txn_id)
UNION ALL
SELECT min(l.invoice_id), NULL::int, 'transaction ' || l.txn_id || ' is on ' || count(*) || ' invoices'
  FROM listed_charges l GROUP BY l.txn_id HAVING count(*) > 1
"""

# Credit notes: each reversal names a line of the invoice its credit note corrects, and no line is reversed beyond
# its amount (in its sign) by all credit notes together.
_REVERSALS = """
SELECT r.invoice_id, r.position, 'reverses line ' || coalesce(l.position::text, 'of another invoice')
       || ' beyond what it charged'
  FROM invoicing_invoiceline r
  JOIN invoicing_invoice n ON n.id = r.invoice_id AND n.kind = 'credit_note' AND n.status = 'issued'
  LEFT JOIN invoicing_invoiceline l ON l.id = r.reverses_id AND l.invoice_id = n.corrects_id
 WHERE n.organization_id = %(org)s
   AND (l.id IS NULL OR sign(r.amount_nano) = sign(l.amount_nano) OR r.amount_nano = 0
        OR abs((SELECT sum(x.amount_nano) FROM invoicing_invoiceline x
                  JOIN invoicing_invoice xn ON xn.id = x.invoice_id AND xn.status = 'issued'
                 WHERE x.reverses_id = l.id)) > abs(l.amount_nano))
"""

# A credit note's totals are its lines (by the kind of line each reverses), and its ledger grant gives back exactly
# the charges it reverses net of the credit applied to them (none when that is zero).
_CREDIT_NOTE_TOTALS = """
SELECT n.id, NULL::int, 'totals do not add up to the lines, or its grant is not what it gives back'
  FROM invoicing_invoice n
  LEFT JOIN invoicing_invoiceline r ON r.invoice_id = n.id
  LEFT JOIN invoicing_invoiceline l ON l.id = r.reverses_id
  LEFT JOIN ledger_grant g ON g.id = n.credit_grant_id
 WHERE n.organization_id = %(org)s AND n.kind = 'credit_note' AND n.status = 'issued'
 GROUP BY n.id, g.amount_nano, g.kind
HAVING n.charges_nano <> coalesce(
           sum(r.amount_nano) FILTER (WHERE l.kind NOT LIKE 'credit_%%' AND l.kind <> 'carry'), 0)
    OR n.credit_applied_nano <> coalesce(sum(r.amount_nano) FILTER (WHERE l.kind LIKE 'credit_%%'), 0)
    OR n.carry_in_nano <> coalesce(sum(r.amount_nano) FILTER (WHERE l.kind = 'carry'), 0)
    OR coalesce(g.amount_nano, 0) <> -(n.charges_nano + n.credit_applied_nano)
    OR (g.kind IS NOT NULL AND g.kind <> 'refund')
"""


def _key_of(alias: str) -> str:
    """A rollup row's piece key (PIECE_KEY) in SQL: the row of its columns in the table aliased `alias`."""
    columns = [field.column for field in MonthRollup._meta.concrete_fields if field.name in PIECE_KEY]
    return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"


# The month rollup a close of a whole calendar month reads instead of its days: each month row is the sum of the day
# rows it names, all of its month and piece key, and each day row of a day added to its month (RollupDay.month_added)
# is summed exactly once, by its month row (the organization is part of the key).
_MONTH_ROLLUPS = (
    "WITH"  # noqa: S608 (constant SQL text; every value is a parameter)
    + """
named AS (
    SELECT m.*, rid FROM invoicing_monthrollup m LEFT JOIN LATERAL unnest(m.rollup_ids) AS rid ON true
     WHERE m.organization_id = %(org)s
),
months AS (
    SELECT n.id, n.month, concat_ws('; ',
               CASE WHEN count(d.id) < count(n.rid)
                    THEN 'names ' || count(n.rid) - count(d.id) || ' day row(s) that do not exist' END,
               CASE WHEN count(d.id) FILTER (WHERE date_trunc('month', d.day)::date <> n.month OR """
    + _key_of("d")
    + " IS DISTINCT FROM "
    + _key_of("n")
    + """) > 0
                    THEN 'names day rows of another month, organization or piece key' END,
               CASE WHEN n.tokens <> coalesce(sum(d.tokens), 0)
                    THEN 'tokens ' || n.tokens || ' is not its days'' sum ' || coalesce(sum(d.tokens), 0) END,
               CASE WHEN n.requests <> coalesce(sum(d.requests), 0)
                    THEN 'requests ' || n.requests || ' is not its days'' sum ' || coalesce(sum(d.requests), 0) END,
               CASE WHEN n.amount_nano <> coalesce(sum(d.amount_nano), 0)
                    THEN 'amount_nano ' || n.amount_nano || ' is not its days'' sum ' || coalesce(sum(d.amount_nano), 0)
               END,
               CASE WHEN n.unfunded_nano <> coalesce(sum(d.unfunded_nano), 0)
                    THEN 'unfunded_nano ' || n.unfunded_nano || ' is not its days'' sum '
                         || coalesce(sum(d.unfunded_nano), 0) END
           ) AS problem
      FROM named n LEFT JOIN invoicing_dailyrollup d ON d.id = n.rid
     GROUP BY n.id, n.month, n.tokens, n.requests, n.amount_nano, n.unfunded_nano
)
SELECT NULL::bigint, NULL::int, 'month rollup ' || to_char(month, 'YYYY-MM') || ' (row ' || id || '): ' || problem
  FROM months
 WHERE problem <> ''
UNION ALL
SELECT NULL, NULL, 'month rollup ' || to_char(d.day, 'YYYY-MM') || ': day row ' || d.id || ' of ' || d.day
       || CASE count(n.rid) WHEN 0 THEN ' is summed in no month row' ELSE ' is summed ' || count(n.rid) || ' times' END
  FROM invoicing_dailyrollup d
  JOIN invoicing_rollupday r ON r.day = d.day AND r.month_added
  LEFT JOIN named n ON n.rid = d.id
 WHERE d.organization_id = %(org)s
 GROUP BY d.id
HAVING count(n.rid) <> 1
 ORDER BY 3
"""
)

RECONCILE_CHECKS = (
    _CHARGE_LINES,
    _FEE_LINES,
    _RECORD_LINES,
    _TRUEUP_LINES,
    _CREDIT_LINES,
    _USAGE_LINES,
    _TOTALS,
    _COVERAGE,
    _REVERSALS,
    _CREDIT_NOTE_TOTALS,
    _MONTH_ROLLUPS,
)


def invoices_reconcile(*, organization_id: int) -> list[str]:
    """What is wrong with the organization's invoices against the ledger and usage, as sentences (empty: all
    agree): each line's amount equals what it names to the nano (spent entries, grant draws, usage records' rating
    lines), each invoice's totals equal its lines, and every charge of a closed period is on exactly one invoice.
    Also the month rollup a close may read instead of the days: each month row is the sum of its day rows."""
    problems = []
    numbers = dict(Invoice.objects.filter(organization_id=organization_id).values_list("id", "number"))
    with connection.cursor() as cursor:
        for check in RECONCILE_CHECKS:
            cursor.execute(check, {"org": organization_id})
            for invoice_id, position, problem in cursor.fetchall():
                if invoice_id is None:  # not an invoice's: the sentence names what it is about
                    problems.append(problem)
                    continue
                where = f"invoice {numbers.get(invoice_id) or invoice_id}"
                if position is not None:
                    where += f" line {position}"
                problems.append(f"{where}: {problem}")
    return problems


def periods_next(*, organization_ids: list[int] | None = None) -> dict[int, tuple[datetime, datetime]]:
    """Each organization's (with a wallet) next period to close: the one after its latest invoice, or the one its
    wallet was opened in. One query, then calendar arithmetic."""
    wallets = (
        Wallet.objects.all()
        if organization_ids is None
        else Wallet.objects.filter(organization_id__any=organization_ids)
    )
    rows = (
        wallets.values("organization_id")
        .annotate(
            opened=Min("created_at"),
            latest_end=Max("organization__invoices__period_end"),
            anchor_day=Min("organization__billing_profile__anchor_day"),
        )
        .order_by("organization_id")
    )
    periods = {}
    for row in rows:
        anchor_day = row["anchor_day"] or 1
        if row["latest_end"] is not None:
            periods[row["organization_id"]] = period_after(anchor_day=anchor_day, end=row["latest_end"])
        else:
            periods[row["organization_id"]] = period_containing(anchor_day=anchor_day, at=row["opened"])
    return periods


def organizations_due(*, now: datetime | None = None) -> list[int]:
    """Organizations (with a wallet) that have work: an invoice a crashed close left open, one not yet pushed to
    Stripe, or a next period that ended, grace included."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.INVOICE_CLOSE_GRACE_SECONDS)
    busy = set(
        Invoice.objects.filter(
            Q(status__in=OPEN_STATUSES) | Q(status=InvoiceStatus.FINALIZED, pushed_at__isnull=True)
        ).values_list("organization_id", flat=True)
    )
    ended = {org for org, (_, end) in periods_next().items() if end <= cutoff}
    return sorted(busy | ended)


def invoices_unpaid(*, organization_id: int) -> list[Invoice]:
    """The organization's finalized invoices not paid yet, oldest first, each with `due_at` (a sent invoice's due
    date; None for a charged one), `past_due` (payment failed, or due date passed) and `total_nano` (the amount
    due) set."""
    now = timezone.now()
    invoices = list(
        Invoice.objects.filter(organization_id=organization_id, status=InvoiceStatus.FINALIZED).order_by("period_start")
    )
    for invoice in invoices:
        due_at = None
        if invoice.collection_method == "send_invoice" and invoice.finalized_at is not None:
            due_at = invoice.finalized_at + timedelta(days=invoice.days_until_due or 0)
        invoice.due_at = due_at  # type: ignore[attr-defined]
        invoice.total_nano = invoice.total_minor * NANO_PER_MINOR  # type: ignore[attr-defined]
        invoice.past_due = invoice.payment_failed_at is not None or (  # type: ignore[attr-defined]
            due_at is not None and due_at <= now and invoice.total_minor > 0
        )
    return invoices
