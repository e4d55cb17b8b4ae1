"""/usage/: filters, totals, charts and a paginated table; /usage/export.csv streams the same rows as CSV."""

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.selectors import apikey_list
from billing.invoicing.explain import records_invoices
from billing.usage import selectors as usage
from core.money import format_amount
from web.context import membership_required
from web.formatting import spreadsheet_text
from web.forms import USAGE_EXPORT_MAX_DAYS, UsageFilterForm
from web.views.common import membership_of, usage_charts

PAGE_SIZE = 50
CSV_HEADER = (
    "created_at",
    "request_id",
    "api_key_id",
    "api_key_name",
    "workflow",
    "model",
    "endpoint",
    "service_tier",
    "status",
    "source",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "charge",
    "charge_nano",
    "currency",
    "price_version_id",
    "latency_ms",
    # "true" when tiktoken's estimate and the model server's figures differ by more than the tolerance.
    "drift_flagged",
)


def _filters(request: HttpRequest, form: UsageFilterForm) -> usage.UsageFilter:
    data = form.cleaned_data
    start, end = usage.day_range(first=data["start"], last=data["end"])
    return usage.UsageFilter(
        organization_id=membership_of(request).organization_id,
        start=start,
        end=end,
        model_id=data["model"].pk if data.get("model") else None,
        api_key_id=data["key"].pk if data.get("key") else None,
        workflow=data["workflow"],
    )


def _form(request: HttpRequest, *, max_days: int = 366) -> UsageFilterForm:
    keys = apikey_list(organization_id=membership_of(request).organization_id)
    data = request.GET.copy()
    if not data.get("start") and not data.get("end"):
        # No dates chosen: the last 30 days, written into the form so the page and the export link show them.
        today = timezone.now().date()
        data["start"], data["end"] = (today - timedelta(days=29)).isoformat(), today.isoformat()
    return UsageFilterForm(data, keys=keys, max_days=max_days)


@membership_required()
def usage_page(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    form = _form(request)
    context: dict[str, Any] = {"form": form}
    now = timezone.now()
    context["workflows"] = usage.usage_workflows(
        organization_id=membership.organization_id, since=now - timedelta(days=90)
    )
    if not form.is_valid():
        return render(request, "web/usage.html", context, status=400)
    filters = _filters(request, form)
    by = form.cleaned_data["by"]
    first, last = form.cleaned_data["start"], form.cleaned_data["end"]
    currency = membership.organization.currency
    spend_chart, tokens_chart = usage_charts(
        daily=usage.usage_daily(filters=filters, by=by),
        days=[first + timedelta(days=n) for n in range((last - first).days + 1)],
        currency=currency,
        dimension_label=usage.DIMENSION_LABELS[by],
    )
    paginator = Paginator(usage.usage_list(filters=filters), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    # Each row links up to the invoice it is billed on (one query for the page).
    records = list(page.object_list)
    invoices = records_invoices(
        organization_id=membership.organization_id, created=[record.created_at for record in records]
    )
    for record, invoice in zip(records, invoices, strict=True):
        record.invoice = invoice  # type: ignore[attr-defined]
    context.update(
        {
            "totals": usage.usage_totals(filters=filters),
            "refusals": usage.refusals_by_day(filters=filters),
            "currency": currency,
            "charts": [spend_chart, tokens_chart],
            "page": page,
            "records": records,
            "first": first,
            "last": last,
        }
    )
    return render(request, "web/usage.html", context)


class _Echo:
    """A file-like object whose write returns what it was given, so csv.writer formats one row at a time."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: list[tuple[Any, ...]], currency: str) -> str:
    writer = csv.writer(_Echo())
    lines = []
    for (
        _id,
        created_at,
        request_id,
        key_id,
        key_name,
        workflow,
        model,
        endpoint,
        tier,
        status,
        source,
        input_tokens,
        cached,
        output_tokens,
        reasoning_tokens,
        charge_nano,
        price_version_id,
        latency_ms,
        drift_flagged,
    ) in rows:
        lines.append(
            writer.writerow(
                [
                    created_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                    request_id,
                    key_id or "",
                    spreadsheet_text(key_name or ""),
                    spreadsheet_text(workflow),
                    model,
                    endpoint,
                    tier,
                    status,
                    source,
                    input_tokens,
                    cached,
                    output_tokens,
                    reasoning_tokens,
                    input_tokens + output_tokens,
                    format_amount(charge_nano, places=2),
                    charge_nano,
                    currency,
                    price_version_id or "",
                    latency_ms,
                    "true" if drift_flagged else "false",
                ]
            )
        )
    return "".join(lines)


def _header() -> str:
    return str(csv.writer(_Echo()).writerow(CSV_HEADER))


def _csv_stream(filters: usage.UsageFilter, currency: str, batch_size: int) -> Iterator[str]:
    yield _header()
    for rows in usage.usage_export_batches(filters=filters, batch_size=batch_size):
        yield _csv_lines(rows, currency)


async def _acsv_stream(filters: usage.UsageFilter, currency: str, batch_size: int) -> AsyncIterator[str]:
    """The same stream for ASGI servers: each batch is read in a worker thread, and sent before the next."""
    yield _header()
    batches = usage.usage_export_batches(filters=filters, batch_size=batch_size)
    sentinel: list[tuple[Any, ...]] = []
    next_batch = sync_to_async(lambda: next(batches, sentinel), thread_sensitive=True)
    while True:
        rows = await next_batch()
        if rows is sentinel:
            return
        yield _csv_lines(rows, currency)


@membership_required()
def usage_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered usage as CSV, oldest first, streamed batch by batch whatever the range."""
    membership = membership_of(request)
    form = _form(request, max_days=USAGE_EXPORT_MAX_DAYS)
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in form.errors.items())
        return HttpResponse(f"Cannot export: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    filters = _filters(request, form)
    currency = membership.organization.currency
    batch_size = settings.USAGE_EXPORT_BATCH_ROWS
    # Under ASGI a synchronous iterator would be read to the end before the first byte is sent; give each
    # server the kind of iterator it streams.
    content = (
        _acsv_stream(filters, currency, batch_size)
        if isinstance(request, ASGIRequest)
        else _csv_stream(filters, currency, batch_size)
    )
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    name = f"usage-{form.cleaned_data['start']:%Y%m%d}-{form.cleaned_data['end']:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
