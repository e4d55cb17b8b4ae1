"""Reads of usage for the dashboard, the usage page and the CSV export.

Every read starts with the organization and a half-open time range [start, end), which the
(organization, created_at) index serves; per-day figures are grouped in SQL (GROUP BY the UTC date and one
dimension), so a month of usage is a few dozen rows over the wire whatever the number of requests. Days are UTC
days.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from billing.usage.models import RefusalCount, UsageRecord

Dimension = Literal["model", "key", "workflow"]
DIMENSIONS: tuple[Dimension, ...] = ("model", "key", "workflow")
DIMENSION_LABELS = {"model": "model", "key": "API key", "workflow": "workflow"}
# Labels for usage without a key (reported by a provider server-to-server) or without a workflow tag.
NO_KEY_LABEL = "(no key)"
NO_WORKFLOW_LABEL = "(untagged)"
BURN_RATE_DAYS = 7


@dataclass(frozen=True)
class UsageFilter:
    """Which usage to read: one organization, [start, end), and optionally one model, key or workflow."""

    organization_id: int
    start: datetime
    end: datetime
    model_id: int | None = None
    api_key_id: int | None = None
    # None: any workflow; "": only untagged usage.
    workflow: str | None = None


def day_range(*, first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) covering the UTC days `first` to `last`, both included."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


def usage_records(*, filters: UsageFilter) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(
        organization_id=filters.organization_id, created_at__gte=filters.start, created_at__lt=filters.end
    )
    if filters.model_id is not None:
        records = records.filter(model_id=filters.model_id)
    if filters.api_key_id is not None:
        records = records.filter(api_key_id=filters.api_key_id)
    if filters.workflow is not None:
        records = records.filter(workflow=filters.workflow)
    return records


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    charge_nano: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def usage_totals(*, filters: UsageFilter) -> UsageTotals:
    """Sums over the filtered usage, in one query."""
    row = usage_records(filters=filters).aggregate(
        requests=Count("id"),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        cached_input_tokens=Coalesce(Sum("cached_input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        reasoning_tokens=Coalesce(Sum("reasoning_tokens"), 0),
        charge_nano=Coalesce(Sum("charge_nano"), 0),
    )
    return UsageTotals(**row)


@dataclass(frozen=True)
class DailyUsage:
    """One day of one group (a model, a key or a workflow)."""

    day: date
    group: str  # a stable key: the model slug, the key's id, or the workflow
    label: str  # what a person reads
    requests: int
    tokens: int  # input (cached included) + output
    charge_nano: int


_GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("model__slug",),
    "key": ("api_key_id", "api_key__name", "api_key__key_id"),
    "workflow": ("workflow",),
}


def _group_of(by: str, row: dict[str, Any]) -> tuple[str, str]:
    if by == "model":
        return row["model__slug"], row["model__slug"]
    if by == "key":
        if row["api_key_id"] is None:
            return "", NO_KEY_LABEL
        return str(row["api_key_id"]), f"{row['api_key__name']} ({row['api_key__key_id'][:6]}…)"
    return row["workflow"], row["workflow"] or NO_WORKFLOW_LABEL


def usage_daily(*, filters: UsageFilter, by: Dimension) -> list[DailyUsage]:
    """Requests, tokens and spend per UTC day and per `by` (model, key or workflow), in one GROUP BY query."""
    if by not in _GROUP_FIELDS:
        raise ValueError(f"unknown dimension {by!r}")
    rows = (
        usage_records(filters=filters)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", *_GROUP_FIELDS[by])
        .annotate(
            requests=Count("id"),
            tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
            charge_nano=Coalesce(Sum("charge_nano"), 0),
        )
        .order_by("day", *_GROUP_FIELDS[by])
    )
    result = []
    for row in rows:
        group, label = _group_of(by, row)
        result.append(
            DailyUsage(
                day=row["day"],
                group=group,
                label=label,
                requests=row["requests"],
                tokens=row["tokens"],
                charge_nano=row["charge_nano"],
            )
        )
    return result


@dataclass(frozen=True)
class BurnRate:
    """Spend over the last `days` days and how long the available credit lasts at that pace."""

    days: int
    spend_nano: int
    per_day_nano: int  # rounded down to a whole nano-unit
    available_nano: int
    # None when nothing was spent (no pace to project); 0 when no credit is left. Rounded down to 0.1 day.
    runway_days: Decimal | None


def burn_rate(*, organization_id: int, available_nano: int, now: datetime, days: int = BURN_RATE_DAYS) -> BurnRate:
    spend = UsageRecord.objects.filter(
        organization_id=organization_id, created_at__gte=now - timedelta(days=days), created_at__lt=now
    ).aggregate(total=Coalesce(Sum("charge_nano"), 0))["total"]
    runway: Decimal | None
    if spend == 0:
        runway = None
    elif available_nano <= 0:
        runway = Decimal(0)
    else:
        # available / (spend / days), in exact integers until the one division shown to a person.
        runway = (Decimal(available_nano * days) / Decimal(spend)).quantize(Decimal("0.1"), rounding=ROUND_DOWN)
    return BurnRate(
        days=days, spend_nano=spend, per_day_nano=spend // days, available_nano=available_nano, runway_days=runway
    )


def usage_list(*, filters: UsageFilter) -> QuerySet[UsageRecord]:
    """The filtered usage, newest first, with the model and key each row shows (no query per row)."""
    return (
        usage_records(filters=filters)
        .select_related("model", "api_key")
        .only(
            "id",
            "created_at",
            "request_id",
            "endpoint",
            "workflow",
            "service_tier",
            "status",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "drift_flagged",
            "charge_nano",
            "latency_ms",
            "model__slug",
            "api_key__name",
            "api_key__key_id",
        )
        .order_by("-created_at", "-id")
    )


def usage_recent(*, organization_id: int, limit: int = 20) -> list[UsageRecord]:
    """The organization's latest requests (the index walks backwards from the newest; no time bound needed)."""
    return list(
        UsageRecord.objects.filter(organization_id=organization_id)
        .select_related("model", "api_key")
        .order_by("-created_at", "-id")[:limit]
    )


def usage_workflows(*, organization_id: int, since: datetime) -> list[str]:
    """Workflow tags seen since `since` (for the filter's suggestions)."""
    return list(
        UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
        .exclude(workflow="")
        .order_by("workflow")
        .values_list("workflow", flat=True)
        .distinct()[:200]
    )


EXPORT_FIELDS = (
    "id",
    "created_at",
    "request_id",
    "api_key__key_id",
    "api_key__name",
    "workflow",
    "model__slug",
    "endpoint",
    "service_tier",
    "status",
    "source",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "charge_nano",
    "price_version_id",
    "latency_ms",
    "drift_flagged",
)


def usage_export_batches(*, filters: UsageFilter, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The filtered usage, oldest first, as tuples of EXPORT_FIELDS, `batch_size` rows per query.

    Keyset pagination on (created_at, id): each batch is an independent indexed query that resumes after the
    last row of the previous one, so an export of any length holds one batch in memory and no transaction or
    server-side cursor open between batches.
    """
    base = usage_records(filters=filters).order_by("created_at", "id").values_list(*EXPORT_FIELDS)
    after: tuple[datetime, int] | None = None
    while True:
        page = base
        if after is not None:
            page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
        rows = list(page[:batch_size])
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        after = (rows[-1][1], rows[-1][0])


@dataclass(frozen=True)
class RefusalSummary:
    """Calls refused on one UTC day for one reason (summed over keys and workflows unless filtered)."""

    day: date
    status: int
    reason: str
    count: int


def refusals_by_day(*, filters: UsageFilter) -> list[RefusalSummary]:
    """Refused calls (402, 429) in the filtered days, by day and reason, newest first. A refused call used no model,
    so the model filter does not apply; the key and workflow filters do."""
    rows = RefusalCount.objects.filter(
        organization_id=filters.organization_id,
        day__gte=filters.start.date(),
        day__lt=filters.end.date(),
    )
    if filters.api_key_id is not None:
        rows = rows.filter(api_key_id=filters.api_key_id)
    if filters.workflow is not None:
        rows = rows.filter(workflow=filters.workflow)
    grouped = rows.values("day", "status", "reason").annotate(total=Sum("count")).order_by("-day", "status", "reason")
    return [RefusalSummary(r["day"], r["status"], r["reason"], r["total"]) for r in grouped]


@dataclass(frozen=True)
class DriftRow:
    """How far tiktoken's estimates and a model server's reported counts were apart, for one model and server."""

    model: str
    served_by: str
    requests: int
    reported: int  # requests whose server reported usage
    flagged: int  # requests whose drift passed the tolerance (or whose report was incomplete)
    estimated_input_tokens: int
    input_tokens: int
    estimated_output_tokens: int
    # The output billed without reasoning (which never shows in the delivered text tiktoken counts).
    visible_output_tokens: int


def usage_drift_report(*, start: datetime, end: datetime) -> list[DriftRow]:
    """Gateway usage in [start, end) by model and model server, most flagged first (for staff: a server whose
    counts drift from tiktoken's is misreporting, or the model's encoding is wrong in the catalogue)."""
    rows = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, source="gateway")
        .exclude(status__in=["upstream_error", "upstream_timeout"])
        .values("model__slug", "served_by")
        .annotate(
            requests=Count("id"),
            reported=Count("id", filter=Q(usage_reported=True)),
            flagged=Count("id", filter=Q(drift_flagged=True)),
            estimated_input=Coalesce(Sum("estimated_input_tokens"), 0),
            billed_input=Coalesce(Sum("input_tokens"), 0),
            estimated_output=Coalesce(Sum("estimated_output_tokens"), 0),
            visible_output=Coalesce(Sum(F("output_tokens") - F("reasoning_tokens")), 0),
        )
        .order_by("-flagged", "model__slug", "served_by")
    )
    return [
        DriftRow(
            model=r["model__slug"],
            served_by=r["served_by"],
            requests=r["requests"],
            reported=r["reported"],
            flagged=r["flagged"],
            estimated_input_tokens=r["estimated_input"],
            input_tokens=r["billed_input"],
            estimated_output_tokens=r["estimated_output"],
            visible_output_tokens=r["visible_output"],
        )
        for r in rows
    ]
