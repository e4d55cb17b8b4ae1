"""Invoice pages: the organization's invoices, one invoice (HTML, PDF, CSV of its lines), "explain my bill" (a line
down to its requests) and one request up to its invoice lines.

Every member reads them (like the usage page); only owners and billing admins get payment actions (the link to pay
on Stripe). Another organization's invoice, line or request is a 404, exactly like one that does not exist.
"""

import csv
import io
from datetime import date
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET
from xhtml2pdf import pisa

from accounts.ids import is_id_text
from accounts.permissions import Capability
from billing.invoicing import explain, statements
from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import NANO_PER_MINOR, Invoice, LineKind
from billing.invoicing.selectors import invoice_lines
from billing.usage.models import UsageRecord
from core.money import format_amount
from web.context import membership_required
from web.formatting import spreadsheet_text
from web.views.common import can, membership_of

PAGE_SIZE = 50
LINES_CSV_HEADER = (
    "invoice",
    "position",
    "kind",
    "description",
    "model",
    "price_version_id",
    "service_tier",
    "token_kind",
    "source",
    "quantity",
    "unit",
    "rate_micro_per_mtok",
    "factor_bps",
    "discount_bps",
    "unit_price_nano",
    "amount",
    "amount_nano",
    "currency",
    "period_start",
    "period_end",
)


class BadQuery(Exception):
    """A query parameter that cannot be read; the page answers 400 with this message."""


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "billing/bad_query.html", {"message": message}, status=400)


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    if not is_id_text(raw) or int(raw) < 1 or int(raw) > 1_000_000:
        raise BadQuery(f"page must be a whole number from 1, not {raw[:20]!r}.")
    return int(raw)


def _invoice(request: HttpRequest, invoice_id: int) -> Invoice:
    try:
        return statements.organization_invoice(
            organization_id=membership_of(request).organization_id, invoice_id=invoice_id
        )
    except InvoiceNotFound:
        raise Http404("No such invoice.") from None


@require_GET
@membership_required()
def invoices_page(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    try:
        number = _page_number(request)
    except BadQuery as exc:
        return _bad_request(request, str(exc))
    now = timezone.now()
    paginator = Paginator(statements.organization_invoices(organization_id=membership.organization_id), PAGE_SIZE)
    page = paginator.get_page(number)
    rows = [
        {
            "invoice": invoice,
            "status": statements.invoice_customer_status(invoice, now=now),
            "due_nano": invoice.total_minor * NANO_PER_MINOR,
        }
        for invoice in page.object_list
    ]
    context: dict[str, Any] = {
        "page": page,
        "rows": rows,
        # The running periods only head the first page (they are the newest).
        "running": statements.running_periods(organization_id=membership.organization_id, now=now)
        if page.number == 1
        else [],
        "can_pay": can(request, Capability.MANAGE_BILLING),
        "currency": membership.organization.currency,
    }
    return render(request, "billing/invoices.html", context)


def _document_context(request: HttpRequest, invoice: Invoice) -> dict[str, Any]:
    lines = list(invoice_lines(invoice_id=invoice.pk))
    total_nano = invoice.total_minor * NANO_PER_MINOR
    return {
        "invoice": invoice,
        "lines": lines,
        "issuer": statements.invoice_issuer(),
        "billed_to": statements.invoice_billed_to(invoice, invoice.organization),
        "status": statements.invoice_customer_status(invoice, now=timezone.now()),
        "due_at": statements.invoice_due_at(invoice),
        "total_nano": total_nano,
        "tax": statements.invoice_tax(total_minor=invoice.total_minor),
        "record_kinds": (LineKind.REFUND, LineKind.DISPUTE),
        "currency": invoice.currency,
    }


@require_GET
@membership_required()
def invoice_page(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = _invoice(request, invoice_id)
    context = _document_context(request, invoice)
    context["can_pay"] = can(request, Capability.MANAGE_BILLING)
    return render(request, "billing/invoice.html", context)


def _file_stem(invoice: Invoice) -> str:
    return invoice.number or f"invoice-{invoice.pk}-draft"


@require_GET
@membership_required()
def invoice_pdf(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The invoice as a PDF, drawn by xhtml2pdf from the same document template as the page."""
    invoice = _invoice(request, invoice_id)
    html = render_to_string("billing/invoice_pdf.html", _document_context(request, invoice), request=request)
    output = io.BytesIO()
    result = pisa.CreatePDF(html, dest=output, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"xhtml2pdf could not draw invoice {invoice.pk}: {result.err} errors")
    response = HttpResponse(output.getvalue(), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{_file_stem(invoice)}.pdf"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@membership_required()
def invoice_lines_csv(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = _invoice(request, invoice_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(LINES_CSV_HEADER)
    for line in invoice_lines(invoice_id=invoice.pk):
        writer.writerow(
            [
                invoice.number,
                line.position,
                line.kind,
                spreadsheet_text(line.description),
                line.model.slug if line.model else "",
                line.price_version_id or "",
                line.service_tier,
                line.token_kind,
                line.source,
                line.quantity,
                line.unit,
                "" if line.rate_micro_per_mtok is None else line.rate_micro_per_mtok,
                "" if line.factor_bps is None else line.factor_bps,
                "" if line.discount_bps is None else line.discount_bps,
                "" if line.unit_price_nano is None else line.unit_price_nano,
                format_amount(line.amount_nano, places=2),
                line.amount_nano,
                invoice.currency,
                line.period_start.isoformat(),
                line.period_end.isoformat(),
            ]
        )
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_file_stem(invoice)}-lines.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _request_filter(request: HttpRequest) -> explain.RequestFilter:
    """?day=YYYY-MM-DD, ?key=<key id> (empty: requests without a key), ?workflow=<tag> (empty: untagged)."""
    day: date | None = None
    raw_day = request.GET.get("day")
    if raw_day is not None:
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            raise BadQuery(f"day must be a date such as 2026-03-31, not {raw_day[:20]!r}.") from None
    key = request.GET.get("key")
    if key not in (None, "") and not is_id_text(key):
        raise BadQuery(f"key must be an API key's id (or empty for requests without a key), not {key[:20]!r}.")
    workflow = request.GET.get("workflow")
    if workflow is not None and len(workflow) > 100:
        raise BadQuery("workflow must be at most 100 characters.")
    return explain.RequestFilter(day=day, key=key, workflow=workflow)


@require_GET
@membership_required()
def invoice_line_page(request: HttpRequest, invoice_id: int, line_id: int) -> HttpResponse:
    """Explain one line: a usage line by day, key or workflow, and the requests behind it (filtered by a group)."""
    invoice = _invoice(request, invoice_id)
    line = invoice_lines(invoice_id=invoice.pk).filter(pk=line_id).first()
    if line is None:
        raise Http404("No such line on this invoice.")
    raw_by = request.GET.get("by") or "day"
    by = next((choice for choice in explain.BREAKDOWNS if choice == raw_by), None)
    try:
        if by is None:
            raise BadQuery(f"by must be one of {', '.join(explain.BREAKDOWNS)}, not {raw_by[:20]!r}.")
        filters = _request_filter(request)
        number = _page_number(request)
    except BadQuery as exc:
        return _bad_request(request, str(exc))
    requests, total = explain.line_requests(
        line=line, filters=filters, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    pages = max(1, -(-total // PAGE_SIZE))
    filtered = filters != explain.RequestFilter()
    context: dict[str, Any] = {
        "invoice": invoice,
        "line": line,
        "by": by,
        "breakdowns": explain.BREAKDOWNS,
        "groups": explain.line_breakdown(line=line, by=by),
        "requests": requests,
        "total_requests": total,
        "page_number": number,
        "pages": pages,
        "filters": filters,
        "filtered": filtered,
        "currency": invoice.currency,
    }
    return render(request, "billing/invoice_line.html", context)


@require_GET
@membership_required()
def usage_request_page(request: HttpRequest, usage_id: int) -> HttpResponse:
    """One request: its token counts, how each part was priced and paid, its ledger transaction, and the invoice
    lines it is on (or that its period is not invoiced yet)."""
    organization_id = membership_of(request).organization_id
    record = (
        UsageRecord.objects.select_related("model", "api_key", "price_version")
        .filter(pk=usage_id, organization_id=organization_id)
        .first()
    )
    if record is None:
        raise Http404("No such request.")
    place = explain.record_place(organization_id=organization_id, usage_id=record.pk, created_at=record.created_at)
    context: dict[str, Any] = {
        "record": record,
        "rating_lines": record.lines if isinstance(record.lines, list) else [],
        "place": place,
        "transaction_id": explain.record_transaction_id(hold_id=record.hold_id, request_id=record.request_id),
        "currency": membership_of(request).organization.currency,
    }
    return render(request, "billing/usage_request.html", context)
