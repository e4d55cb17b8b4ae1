"""How the audit log page writes an entry's changes: field names in words, prices and amounts in dollars."""

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from accounts.models import AuditEvent
from billing.pricing.units import price_format
from core.money import format_amount

LABELS = {
    "price_version_id": "Price version",
    "input_price_micro_per_mtok": "Input price",
    "cached_input_price_micro_per_mtok": "Cached input price",
    "output_price_micro_per_mtok": "Output price",
    "request_fee_nano": "Request fee",
    "priority_factor_bps": "Priority tier factor",
    "flex_factor_bps": "Flex tier factor",
    "batch_factor_bps": "Batch tier factor",
    "long_context_threshold_tokens": "Long context above (tokens)",
    "long_input_price_micro_per_mtok": "Long-context input price",
    "long_cached_input_price_micro_per_mtok": "Long-context cached input price",
    "long_output_price_micro_per_mtok": "Long-context output price",
    "effective_from": "Effective from",
    "effective_until": "Effective until",
    "cancelled_at": "Cancelled at",
    "fee_nano": "Fee",
    "included_credit_nano": "Included credit",
    "usage_discount_bps": "Discount beyond allowances",
    "discount_bps": "Discount",
    "blended_price_micro_per_mtok": "Blended price",
    "monthly_fee_nano": "Monthly fee",
    "current_period_end": "Current period ends",
    "cancel_at_period_end": "Cancel at period end",
}
TIMES = {"effective_from", "effective_until", "cancelled_at", "current_period_end", "ends_at", "starts_at", "sunset_at"}


def field_label(field: str) -> str:
    return LABELS.get(field) or field.replace("_", " ").capitalize()


def _when(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment.second else f"{moment:%Y-%m-%d %H:%M} UTC"


def value_text(field: str, value: Any) -> str:
    """A recorded value as a person reads it; the unit comes from the field's name."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and field.endswith("_micro_per_mtok"):
        return f"${price_format(value)} / M tokens"
    if isinstance(value, int) and field.endswith("_nano"):
        return f"${format_amount(value)}"
    if isinstance(value, int) and field.endswith("_bps"):
        return f"{value} bps ({(Decimal(value) / 100).normalize():f}%)"
    if isinstance(value, int) and field.endswith("_id"):
        return f"#{value}"
    if isinstance(value, str) and field in TIMES:
        return _when(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def change_rows(event: AuditEvent) -> list[dict[str, str]]:
    """The fields an entry changed, before and after. An entry from before changes were kept shows its detail
    as the values it recorded."""
    if event.changes:
        # PostgreSQL's jsonb keeps keys in its own order: list the known fields in the order of LABELS.
        order = {field: n for n, field in enumerate(LABELS)}
        fields = sorted(event.changes, key=lambda field: (order.get(field, len(order)), field))
        return [
            {
                "field": field_label(field),
                "before": value_text(field, event.changes[field].get("before")),
                "after": value_text(field, event.changes[field].get("after")),
            }
            for field in fields
        ]
    detail = event.detail if isinstance(event.detail, dict) else {}
    return [{"field": field_label(f), "before": "", "after": value_text(f, v)} for f, v in detail.items()]
