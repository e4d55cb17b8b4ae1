"""Usage reported server-to-server (POST /v1/usage/events), by providers that run inference elsewhere.

Each event is rated (billing.pricing.services.usage_rate), paid from credit (ledger wallet_debit) and counted
against every budget that covers it (billing.metering.budgets.services.budget_charge: a hard one refuses an event
that would pass it, a key's spend limit among them) like a gateway call, and recorded as a usage record (source
"metering"), all in one transaction per event: an event is recorded entirely or not at all, and the batch answers
with a result per event. Event ids are idempotency keys within the organization: a replayed event is answered
"duplicate" with its first charge and never charged twice (the usage record's request_id
"metering:<organization>:<event id>" is unique, and so is the debit's key).
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.services.apikeys import WORKFLOW_RE
from billing.ledger import services as ledger
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import Wallet
from billing.metering import hooks
from billing.metering.budgets import BudgetShort
from billing.metering.budgets.services import budget_charge
from billing.metering.callers import AuthenticatedKey
from billing.pricing import rating, selectors
from billing.pricing import services as pricing
from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel
from billing.usage.models import UsageRecord, UsageSource, UsageStatus
from billing.usage.services import UsageRow, usage_record_create
from core.money import format_amount

EVENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,149}$")
EVENT_TIERS = ("default", "priority", "flex", "batch")
MAX_TOKENS_PER_EVENT = 10**10
CLOCK_SKEW = timedelta(minutes=5)
MAX_MODEL_ID_LENGTH = 200


class EventRejected(Exception):
    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    model_slug: str
    kind: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    service_tier: str
    workflow: str
    occurred_at: datetime


def _tokens(raw: dict[str, Any], name: str, *, required: bool = False) -> int:
    value = raw.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS_PER_EVENT:
        raise EventRejected(f"'{name}' must be a whole number from 0 to {MAX_TOKENS_PER_EVENT}.", param=name)
    return value


def _occurred_at(raw: dict[str, Any], now: datetime) -> datetime:
    value = raw.get("occurred_at")
    if value is None:
        return now
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # shaped like a time but not one: month 13, day 32, hour 25
        parsed = None
    if parsed is None or timezone.is_naive(parsed):
        raise EventRejected("'occurred_at' must be an ISO 8601 time with a time zone.", param="occurred_at")
    oldest = now - timedelta(hours=settings.GATEWAY_USAGE_EVENTS_MAX_AGE_HOURS)
    if not oldest <= parsed <= now + CLOCK_SKEW:
        raise EventRejected(
            f"'occurred_at' must lie within the last {settings.GATEWAY_USAGE_EVENTS_MAX_AGE_HOURS} hours.",
            param="occurred_at",
        )
    return parsed


def event_clean(raw: object, *, key: AuthenticatedKey, now: datetime) -> Event:
    if not isinstance(raw, dict):
        raise EventRejected("Each event must be an object.")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise EventRejected(
            "'id' must be 1 to 150 letters, digits or . _ : / @ + = - (your idempotency key for the event).",
            param="id",
        )
    slug = raw.get("model")
    if not isinstance(slug, str) or not slug:
        raise EventRejected("'model' must be a model id.", param="model", code="missing_required_parameter")
    if len(slug) > MAX_MODEL_ID_LENGTH or "\x00" in slug:
        # No model has such an id; PostgreSQL would refuse the NUL character in the lookup itself.
        raise EventRejected(f"The model '{slug[:100]}' does not exist.", param="model", code="model_not_found")
    kind = AIModel.objects.filter(slug=slug).values_list("kind", flat=True).first()
    if kind is None:
        raise EventRejected(f"The model '{slug}' does not exist.", param="model", code="model_not_found")
    if not key.allows_model(slug):
        raise EventRejected(f"This API key is not allowed to use the model '{slug}'.", code="model_not_allowed")
    input_tokens = _tokens(raw, "input_tokens", required=True)
    cached = _tokens(raw, "cached_input_tokens")
    if cached > input_tokens:
        raise EventRejected("'cached_input_tokens' cannot exceed 'input_tokens'.", param="cached_input_tokens")
    tier = raw.get("service_tier")
    tier = "default" if tier is None or tier == "" else tier
    if not isinstance(tier, str) or tier not in EVENT_TIERS:
        raise EventRejected(f"'service_tier' must be one of {', '.join(EVENT_TIERS)}.", param="service_tier")
    workflow = raw.get("workflow")
    workflow = key.workflow if workflow is None or workflow == "" else workflow  # not [] or {}: those are errors
    if not isinstance(workflow, str) or (workflow and not WORKFLOW_RE.match(workflow)):
        raise EventRejected("'workflow' must be up to 100 letters, digits or . _ : / -.", param="workflow")
    return Event(
        id=event_id,
        model_slug=slug,
        kind=kind,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        output_tokens=_tokens(raw, "output_tokens"),
        service_tier=tier,
        workflow=workflow,
        occurred_at=_occurred_at(raw, now),
    )


def _request_id(key: AuthenticatedKey, event_id: str) -> str:
    return f"metering:{key.organization_id}:{event_id}"


def _result(event_id: Any, status: str, *, record: UsageRecord | None = None, currency: str = "") -> dict[str, Any]:
    result: dict[str, Any] = {"index": None, "id": event_id, "status": status, "error": None}
    if record is not None:
        result |= {
            "request_id": record.request_id,
            "charge": format_amount(record.charge_nano),
            "charge_nano": record.charge_nano,
            "currency": currency,
        }
    return result


def _rejected(event_id: Any, error: EventRejected) -> dict[str, Any]:
    result = _result(event_id, "rejected")
    result["error"] = {
        "message": error.message,
        "type": "invalid_request_error",
        "param": error.param,
        "code": error.code,
    }
    return result


def _replay(key: AuthenticatedKey, event: Event, currency: str) -> dict[str, Any] | None:
    """The answer to an event id seen before: "duplicate" if it reports the same usage, else rejected."""
    record = UsageRecord.objects.select_related("model").filter(request_id=_request_id(key, event.id)).first()
    if record is None:
        return None
    same = (
        record.model.slug,
        record.input_tokens,
        record.cached_input_tokens,
        record.output_tokens,
        record.service_tier,
    ) == (event.model_slug, event.input_tokens, event.cached_input_tokens, event.output_tokens, event.service_tier)
    if not same:
        raise EventRejected(
            f"The event id '{event.id}' was already recorded with different usage; use a new id.",
            code="idempotency_conflict",
            param="id",
        )
    return _result(event.id, "duplicate", record=record, currency=currency)


def _record(key: AuthenticatedKey, event: Event) -> tuple[dict[str, Any], int, int]:
    """Rate, charge and record one event in one transaction; (result, credit charged, budgets that counted it)."""
    request_id = _request_id(key, event.id)
    try:
        context = selectors.pricing_context_get(
            organization_id=key.organization_id, model_slug=event.model_slug, at=event.occurred_at
        )
    except ModelNotFound as exc:
        raise EventRejected(exc.message, param="model", code="model_not_found") from None
    replay = _replay(key, event, context.currency)
    if replay is not None:
        return replay, 0, 0
    usage = rating.Usage(
        model_slug=event.model_slug,
        input_tokens=event.input_tokens,
        cached_input_tokens=event.cached_input_tokens,
        output_tokens=event.output_tokens,
        service_tier=event.service_tier,
    )
    budgeted = 0
    try:
        with transaction.atomic():
            rated = pricing.usage_rate(
                organization_id=key.organization_id, usage=usage, at=event.occurred_at, context=context
            )
            charge = rated.credit_nano
            if charge > 0:
                ledger.wallet_debit(
                    organization_id=key.organization_id,
                    amount_nano=charge,
                    idempotency_key=request_id,
                    actor=f"key:{key.id}",
                    reason=f"usage event {event.id} ({event.model_slug})",
                    category="usage",
                )
                budgeted = budget_charge(
                    organization_id=key.organization_id,
                    api_key_id=key.id,
                    workflow=event.workflow,
                    amount_nano=charge,
                    at=event.occurred_at,
                )
            record = usage_record_create(
                row=UsageRow(
                    organization_id=key.organization_id,
                    api_key_id=key.id,
                    source=UsageSource.METERING,
                    request_id=request_id,
                    endpoint="embeddings" if event.kind == "embedding" else "chat",
                    workflow=event.workflow,
                    model_slug=event.model_slug,
                    service_tier=event.service_tier,
                    status=UsageStatus.OK,
                    input_tokens=event.input_tokens,
                    cached_input_tokens=event.cached_input_tokens,
                    output_tokens=event.output_tokens,
                    estimated_input_tokens=event.input_tokens,
                    estimated_output_tokens=event.output_tokens,
                    usage_reported=True,
                    price_version_id=rated.price_version_id,
                    charge_nano=charge,
                    quota_tokens=rated.quota_tokens,
                    commitment_tokens=rated.commitment_tokens,
                    lines=[line.as_dict() for line in rated.lines],
                    created_at=event.occurred_at,
                )
            )
    except IntegrityError:
        # The same event recorded at the same moment by another request: that one stands.
        replay = _replay(key, event, context.currency)
        if replay is None:
            raise
        return replay, 0, 0
    except InsufficientCredit as exc:
        raise EventRejected(exc.message, code="insufficient_credit") from None
    except BudgetShort as exc:
        raise _budget_rejected(exc, context.currency) from None
    return _result(event.id, "recorded", record=record, currency=context.currency), charge, budgeted


def _budget_rejected(short: BudgetShort, currency: str) -> EventRejected:
    """A hard budget refused the event: a key's spend limit (a hard budget of the key) says so, as at the gateway."""
    amount = f"{format_amount(short.amount_nano)} {currency}"
    left = f"{format_amount(short.left_nano)} {currency} is left; it resets at {short.resets_at.isoformat()}"
    if short.scope == "api_key":
        return EventRejected(
            f"This API key's spend limit per {short.period} ({amount}) does not leave room for this event; {left}.",
            code="key_spend_limit_reached",
        )
    target = "The organization's" if short.scope == "organization" else f"The workflow '{short.workflow}'s"
    return EventRejected(
        f"{target} budget per {short.period} ({amount}, budget {short.budget_id}) does not leave room for this "
        f"event; {left}.",
        code="budget_exceeded",
    )


def usage_events_record(*, key: AuthenticatedKey, events: list[Any], now: datetime) -> list[dict[str, Any]]:
    """Record each event on its own (all of it or nothing of it); a result per event, in order."""
    results = []
    charged = 0
    budgeted = False
    for index, raw in enumerate(events):
        event_id = raw.get("id") if isinstance(raw, dict) else None
        # Echo the id so the caller can match results, if it is a reasonable string.
        event_id = event_id if isinstance(event_id, str) and len(event_id) <= 200 else None
        try:
            result, charge, counted = _record(key, event_clean(raw, key=key, now=now))
        except EventRejected as rejected:
            result, charge, counted = _rejected(event_id, rejected), 0, 0
        # The event's position in the batch: a rejected event without a usable id is still found.
        result["index"] = index
        results.append(result)
        charged += charge
        budgeted = budgeted or counted > 0
    if charged:
        available = Wallet.objects.filter(pk=key.wallet_id).values_list("available_nano", flat=True).first()
        if available is not None:
            # Budgets that counted an event have their thresholds checked, as after gateway calls.
            hooks.after_debit(organization_id=key.organization_id, available_nano=available, budgeted=budgeted)
    return results
