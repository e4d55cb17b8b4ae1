""" "Explain my bill": from an invoice line down to the requests behind it, and from a request up to its lines.

A usage line sums the rating lines (usage_usagerecord.lines, billing.pricing.rating.ChargeLine) of the records it
names that match it: same model and service tier, token kind, source, price version, rate, factor and discount.
The reads below select exactly those rating lines (the reconcile check in selectors.py matches them the same way),
so the groups and the requests shown add up to the line's quantity and amount to the token and the nano-unit.
Grouping and paging happen in PostgreSQL; a page is one query, whatever the number of requests.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from django.db import connection
from django.db.models import Q

from billing.invoicing.models import DailyRollup, DocumentKind, Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing.ledger.models import JournalTransaction

Breakdown = Literal["day", "key", "workflow"]
BREAKDOWNS: tuple[Breakdown, ...] = ("day", "key", "workflow")

# The line's usage records joined to their matching rating lines (one row per matching rating line).
_MATCHED = """
WITH l AS (SELECT * FROM invoicing_invoiceline WHERE id = %(line)s),
m AS (
    SELECT u.id, u.created_at, u.api_key_id, u.workflow, u.request_id, u.hold_id,
           (x->>'tokens')::bigint AS tokens, (x->>'amount_nano')::bigint AS amount,
           x->>'ref' AS ref, x->>'detail' AS detail
      FROM l
      CROSS JOIN LATERAL unnest(invoicing_traced(l.usage_ids, l.rollup_ids, 'usage')) AS uid
      JOIN usage_usagerecord u ON u.id = uid AND u.model_id = l.model_id AND u.service_tier = l.service_tier
      CROSS JOIN LATERAL jsonb_array_elements(u.lines) AS x
     WHERE x->>'kind' = l.token_kind AND x->>'source' = l.source
       AND nullif(x->>'price_version_id', '')::bigint IS NOT DISTINCT FROM l.price_version_id
       AND (l.rate_micro_per_mtok IS NULL OR coalesce((x->>'rate_micro_per_mtok')::bigint, 0) = l.rate_micro_per_mtok)
       AND (l.factor_bps IS NULL OR coalesce((x->>'factor_bps')::bigint, 10000) = l.factor_bps)
       AND (l.discount_bps IS NULL OR coalesce((x->>'discount_bps')::bigint, 0) = l.discount_bps)
)
"""

_GROUP_EXPRESSIONS: dict[str, str] = {
    "day": "(m.created_at AT TIME ZONE 'UTC')::date::text",
    "key": "coalesce(m.api_key_id::text, '')",
    "workflow": "m.workflow",
}

_BREAKDOWN = """
SELECT {group} AS grp, min(k.name), min(k.key_id), count(DISTINCT m.id), sum(m.tokens), sum(m.amount)
  FROM m LEFT JOIN accounts_apikey k ON k.id = m.api_key_id
 GROUP BY 1 ORDER BY 1
"""

# The page is cut first (filter, order, limit on the matched rows alone); only its rows are joined to their record,
# key and ledger transaction.
_REQUESTS = """,
page AS (
    SELECT m.*, count(*) OVER () AS total
      FROM m
     WHERE (%(day)s::date IS NULL OR (m.created_at AT TIME ZONE 'UTC')::date = %(day)s::date)
       AND (%(key)s::text IS NULL OR coalesce(m.api_key_id::text, '') = %(key)s::text)
       AND (%(workflow)s::text IS NULL OR m.workflow = %(workflow)s::text)
     ORDER BY m.created_at, m.id
     LIMIT %(limit)s OFFSET %(offset)s
)
SELECT p.id, p.created_at, p.request_id, p.api_key_id, k.name, k.key_id, p.workflow, u.input_tokens,
       u.cached_input_tokens, u.output_tokens, u.quota_tokens, u.commitment_tokens, u.status, p.tokens, p.amount,
       p.ref, p.detail, t.id, p.total
  FROM page p
  JOIN usage_usagerecord u ON u.id = p.id
  LEFT JOIN accounts_apikey k ON k.id = p.api_key_id
  LEFT JOIN ledger_journaltransaction t ON t.idempotency_key =
       CASE WHEN p.hold_id IS NOT NULL THEN 'hold:' || p.hold_id || ':settle' ELSE 'debit:' || p.request_id END
 ORDER BY p.created_at, p.id
"""


@dataclass(frozen=True)
class LineGroup:
    """The part of a line from one day, one key or one workflow."""

    value: str  # the filter value: an ISO date, a key's id ("" for no key), or a workflow ("" for untagged)
    label: str
    requests: int
    tokens: int
    amount_nano: int


def line_breakdown(*, line: InvoiceLine, by: Breakdown) -> list[LineGroup]:
    """A usage line split by UTC day, API key or workflow: requests, tokens and amount per group (they sum to the
    line). Empty for lines that are not usage."""
    if line.kind != LineKind.USAGE:
        return []
    query = _MATCHED + _BREAKDOWN.format(group=_GROUP_EXPRESSIONS[by])  # a fixed expression, never user text
    with connection.cursor() as cursor:
        cursor.execute(query, {"line": line.pk})
        rows = cursor.fetchall()
    groups = []
    for value, key_name, key_public, requests, tokens, amount in rows:
        if by == "key":
            label = f"{key_name} ({key_public[:6]}…)" if value else "(no key)"
        elif by == "workflow":
            label = value or "(untagged)"
        else:
            label = value
        groups.append(LineGroup(value=value, label=label, requests=requests, tokens=tokens, amount_nano=amount))
    return groups


@dataclass(frozen=True)
class LineRequest:
    """One request behind a usage line, with the part of it the line bills."""

    usage_id: int
    created_at: datetime
    request_id: str
    api_key_id: int | None
    key_label: str
    workflow: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    quota_tokens: int
    commitment_tokens: int
    status: str
    tokens: int  # of the line's token kind, billed on this line
    amount_nano: int
    ref: str  # what paid or priced it ("subscription:3", "commitment:7", ...)
    detail: str
    transaction_id: int | None  # the ledger transaction that charged it (the hold's settlement, or the debit)


@dataclass(frozen=True)
class RequestFilter:
    """Which of a line's requests to list: None means any."""

    day: date | None = None
    key: str | None = None  # an API key's id as text, or "" for requests without a key
    workflow: str | None = None  # "" for untagged requests


def line_requests(
    *, line: InvoiceLine, filters: RequestFilter, limit: int, offset: int
) -> tuple[list[LineRequest], int]:
    """A page of the requests behind a usage line (oldest first) and how many match the filter in all."""
    if line.kind != LineKind.USAGE:
        return [], 0
    params: dict[str, Any] = {
        "line": line.pk,
        "day": filters.day,
        "key": filters.key,
        "workflow": filters.workflow,
        "limit": limit,
        "offset": offset,
    }
    with connection.cursor() as cursor:
        cursor.execute(_MATCHED + _REQUESTS, params)
        rows = cursor.fetchall()
    requests = [
        LineRequest(
            usage_id=row[0],
            created_at=row[1],
            request_id=row[2],
            api_key_id=row[3],
            key_label=f"{row[4]} ({row[5][:6]}…)" if row[3] is not None else "(no key)",
            workflow=row[6],
            input_tokens=row[7],
            cached_input_tokens=row[8],
            output_tokens=row[9],
            quota_tokens=row[10],
            commitment_tokens=row[11],
            status=row[12],
            tokens=row[13],
            amount_nano=row[14],
            ref=row[15] or "",
            detail=row[16] or "",
            transaction_id=row[17],
        )
        for row in rows
    ]
    total = rows[0][18] if rows else 0
    if not rows and offset:
        # Past the last page: count without the page.
        _, total = line_requests(line=line, filters=filters, limit=1, offset=0)
    return requests, total


@dataclass(frozen=True)
class RequestLine:
    """An invoice line a request is on."""

    invoice_id: int
    invoice_number: str
    invoice_status: str
    line_id: int
    position: int
    description: str


@dataclass(frozen=True)
class RequestPlace:
    """Where a request is billed: its invoice (None while its period is open) and the lines it is on."""

    invoice: Invoice | None
    lines: list[RequestLine]


def _containing(invoices: list[Invoice], at: datetime) -> Invoice | None:
    return next((i for i in invoices if i.period_start <= at < i.period_end), None)


def records_invoices(*, organization_id: int, created: list[datetime]) -> list[Invoice | None]:
    """For records created at these moments (a page of the usage table), the invoice each is billed on (None: not
    invoiced yet), in one query. A record is billed in the period its charge was booked in, which is the moment the
    record was written (both in one transaction)."""
    if not created:
        return []
    invoices = list(
        Invoice.objects.filter(
            organization_id=organization_id,
            kind=DocumentKind.INVOICE,  # credit notes share their invoice's period
            period_start__lte=max(created),
            period_end__gt=min(created),
        ).only("id", "number", "status", "period_start", "period_end")
    )
    return [_containing(invoices, at) for at in created]


def record_place(*, organization_id: int, usage_id: int, created_at: datetime) -> RequestPlace:
    """The invoice and lines a usage record is on: the invoice of the period it was booked in, and that invoice's
    usage lines naming it (none for a request that cost nothing and used no tokens)."""
    (invoice,) = records_invoices(organization_id=organization_id, created=[created_at])
    if invoice is None or invoice.status == InvoiceStatus.CLOSING:
        return RequestPlace(invoice=invoice, lines=[])
    # A line names the record itself (read from the ledger) or through a daily rollup row of its period naming it.
    rollups = DailyRollup.objects.filter(
        organization_id=organization_id,
        day__gte=invoice.period_start.astimezone(UTC).date(),
        day__lte=invoice.period_end.astimezone(UTC).date(),
        kind=LineKind.USAGE,
        usage_ids__contains=[usage_id],
    ).values_list("id", flat=True)
    rows = (
        InvoiceLine.objects.filter(invoice_id=invoice.pk, kind=LineKind.USAGE)
        .filter(Q(usage_ids__contains=[usage_id]) | Q(rollup_ids__overlap=list(rollups)))
        .order_by("position")
        .values_list("id", "position", "description")
    )
    lines = [
        RequestLine(
            invoice_id=invoice.pk,
            invoice_number=invoice.number,
            invoice_status=invoice.status,
            line_id=line_id,
            position=position,
            description=description,
        )
        for line_id, position, description in rows
    ]
    return RequestPlace(invoice=invoice, lines=lines)


def record_transaction_id(*, hold_id: int | None, request_id: str) -> int | None:
    """The ledger transaction that charged a request: its hold's settlement (gateway calls) or its debit (reported
    events); found by its idempotency key."""
    key = f"hold:{hold_id}:settle" if hold_id is not None else f"debit:{request_id}"
    return JournalTransaction.objects.filter(idempotency_key=key).values_list("id", flat=True).first()
