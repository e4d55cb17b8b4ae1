"""The life of one metered call, shared by chat completions and embeddings:

admit (rate limits) -> hold (credit, budgets) -> forward -> measure -> settle -> answer with headers
(admission and hold at once when the rate limits have room: admit_and_hold).

A `Call` carries what the steps share. Money steps live in billing.metering.holds; this module turns their
outcomes into OpenAI-shaped errors (402 naming the affordable max_tokens, with a machine-readable object:
api.gateway.refusals; 429 with x-ratelimit-* headers) and the billing headers every answer carries.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpResponseBase
from django.utils import timezone

from api.gateway import catalog, ratelimit, refusals, upstreams
from api.gateway.catalog import ModelInfo
from api.gateway.http import GatewayError
from billing.invoicing import selectors as invoicing_selectors
from billing.metering import holds
from billing.metering.budgets import BudgetShort
from billing.metering.callers import AuthenticatedKey
from billing.pricing import rating
from billing.usage.models import UsageSource, UsageStatus
from billing.usage.services import UsageRow
from core.background import background
from core.money import format_amount
from core.orm import orm_call

MAX_TTL_SECONDS = 24 * 3600

T = TypeVar("T")


def request_id_new() -> str:
    return f"req_{uuid.uuid4().hex}"


# The prompts of requests larger than this (bytes of body) are counted on a worker thread, not on the event
# loop (tiktoken takes a few tenths of a millisecond per 10 kB of English text, during which nothing else runs).
COUNT_OFF_LOOP_BYTES = 64 * 1024


async def counted(body_bytes: int, count: Callable[..., T], *args: Any) -> T:
    """`count(*args)`: on a worker thread when the request's body (`body_bytes`, its own size, not its
    Content-Length: a body sent in chunks declares none) is larger than COUNT_OFF_LOOP_BYTES, else on the event
    loop."""
    if body_bytes > COUNT_OFF_LOOP_BYTES:
        return await asyncio.to_thread(count, *args)
    return count(*args)


@dataclass(slots=True)
class Call:
    request_id: str
    started: float  # time.monotonic()
    at: datetime
    key: AuthenticatedKey
    endpoint: str  # "chat" | "embeddings"
    model: ModelInfo
    context: rating.PricingContext
    workflow: str
    service_tier: str
    prompt_tokens: int
    max_tokens: int  # output tokens the hold covers (per choice)
    n: int = 1
    hold_nano: int = 0
    route: upstreams.Route | None = None
    deadline: float = 0.0  # event-loop time: the end of the call's time limit (GATEWAY_MAX_CALL_SECONDS)
    admission: ratelimit.Admission | None = None
    ticket: holds.Ticket | None = None
    settling: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def output_allowance(self) -> int:
        return self.max_tokens * self.n

    @property
    def tokens(self) -> int:
        """What the call counts against the tokens-per-minute limits: its prompt and the most it may write."""
        return self.prompt_tokens + self.output_allowance

    def latency_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def row(self, status: str) -> UsageRow:
        """The usage record of this call, before rating: counts are filled in by `measured_row`."""
        return UsageRow(
            organization_id=self.key.organization_id,
            api_key_id=self.key.id,
            source=UsageSource.GATEWAY,
            request_id=self.request_id,
            endpoint=self.endpoint,
            workflow=self.workflow,
            model_slug=self.model.slug,
            service_tier=self.service_tier,
            status=status,
            served_by=upstreams.served_by(self.route) if self.route is not None else "",
            estimated_input_tokens=self.prompt_tokens,
            latency_ms=self.latency_ms(),
        )


def drifted(estimate: int, reported: int) -> bool:
    """Whether tiktoken's estimate and the upstream's figure differ by more than the configured tolerance."""
    difference = abs(reported - estimate)
    return difference > settings.GATEWAY_DRIFT_MIN_TOKENS and difference * 100 > settings.GATEWAY_DRIFT_PERCENT * max(
        estimate, 1
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12 else None


@dataclass(frozen=True, slots=True)
class Measured:
    """The tokens a call is billed for, with tiktoken's own counts beside them."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reported: bool
    estimated_input_tokens: int
    estimated_output_tokens: int
    drift: bool
    # The server reported more output than the call allowed: billed (and to be recorded as cut) at the allowance.
    capped: bool = False
    # Of the output tokens, those the server reported as reasoning (completion_tokens_details.reasoning_tokens).
    reasoning_tokens: int = 0

    def usage_object(self) -> dict[str, Any]:
        """OpenAI's usage object with the billed figures."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if self.cached_input_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_input_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def measure(reported: Any, *, estimated_input: int, estimated_output: int, output_cap: int | None = None) -> Measured:
    """The billed counts: the upstream's usage object when it sent a sound one, else tiktoken's counts.

    A usage object missing one of its figures (or with a figure that is not a count) is completed with tiktoken's
    count for that figure, never taken as zero, and the record is flagged for review; an embeddings answer
    (no output) needs no completion_tokens. `output_cap` (max_tokens x n) bounds the output billed: a server that
    produced more than was allowed is not paid for the excess (the answer is cut to it).
    """
    usage = reported if isinstance(reported, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if completion is None and prompt is not None and estimated_output == 0 and output_cap == 0:
        completion = 0  # embeddings: there is no output to report
    if prompt is None and completion is None:
        output = estimated_output if output_cap is None else min(estimated_output, output_cap)
        return Measured(estimated_input, 0, output, False, estimated_input, estimated_output, False)
    complete = prompt is not None and completion is not None
    input_tokens = prompt if prompt is not None else estimated_input
    output_tokens = completion if completion is not None else estimated_output
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) and prompt is not None else None
    cached = min(cached or 0, input_tokens)
    output = output_tokens if output_cap is None else min(output_tokens, output_cap)
    # Reasoning tokens are part of the completion tokens but never in the text delivered (which is what tiktoken
    # counts): the drift check compares the text with the rest.
    out_details = usage.get("completion_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) and completion else None
    reasoning = min(reasoning or 0, output)
    visible = output_tokens - min(reasoning, output_tokens)
    drift = not complete or drifted(estimated_input, input_tokens) or drifted(estimated_output, visible)
    capped = completion is not None and output < completion
    return Measured(input_tokens, cached, output, complete, estimated_input, estimated_output, drift, capped, reasoning)


def measured_row(call: Call, measured: Measured, status: str) -> UsageRow:
    row = call.row(status)
    row.input_tokens = measured.input_tokens
    row.cached_input_tokens = measured.cached_input_tokens
    row.output_tokens = measured.output_tokens
    row.reasoning_tokens = measured.reasoning_tokens
    row.estimated_input_tokens = measured.estimated_input_tokens
    row.estimated_output_tokens = measured.estimated_output_tokens
    row.usage_reported = measured.reported
    row.drift_flagged = measured.drift
    return row


def usage_of(call: Call, measured: Measured) -> rating.Usage:
    return rating.Usage(
        model_slug=call.model.slug,
        input_tokens=measured.input_tokens,
        cached_input_tokens=measured.cached_input_tokens,
        output_tokens=measured.output_tokens,
        service_tier=call.service_tier,
        reasoning_tokens=measured.reasoning_tokens,
    )


# --- admission and hold ---------------------------------------------------------------------------------------


async def admit_and_hold(call: Call) -> None:
    """The rate limits (429), then the hold (402).

    When the rate limits this process last heard of had plenty of room for the call (ratelimit.roomy), both are
    asked at once, so the call waits on Redis and PostgreSQL together rather than one after the other. A call the
    rate limits refuse after all then has its hold withdrawn as soon as it is placed, and gets the same 429; its
    refusal tells this process the limits are near, so the key's next calls ask in turn until there is room again.
    """
    draw = ratelimit.draw_for(key=call.key, context=call.context, tokens=call.tokens)
    if not ratelimit.roomy(draw):
        await admit(call, draw)
        await hold(call)
        return
    placing = _hold_start(call)
    try:
        await admit(call, draw)
    except BaseException as exc:
        left = isinstance(exc, asyncio.CancelledError)
        placing.add_done_callback(lambda done: _release_unwanted(call, done, client_left=left))
        raise
    await _hold_finish(call, placing)


async def admit(call: Call, draw: ratelimit.Draw | None = None) -> None:
    """Rate limits (on `draw`, the call's buckets, when the caller has them already); GatewayError 429 with
    Retry-After and x-ratelimit-* headers when over them."""
    draw = draw or ratelimit.draw_for(key=call.key, context=call.context, tokens=call.tokens)
    admission = await ratelimit.admit(draw)
    call.admission = admission
    call.headers.update(admission.headers)
    if not admission.admitted:
        headers = dict(admission.headers)
        if admission.too_large:
            headers["x-should-retry"] = "false"
        raise GatewayError(
            429,
            admission.message,
            error_type="rate_limit_exceeded" if not admission.too_large else "invalid_request_error",
            code="rate_limit_exceeded" if not admission.too_large else "request_too_large",
            headers=headers,
        )


async def hold(call: Call) -> None:
    """Reserve the call's hold; GatewayError 402 if the credit or a hard budget (a key's spend limit is one) does
    not cover it (the rate-limit tokens the call was admitted with are then given back)."""
    await _hold_finish(call, _hold_start(call))


def _hold_start(call: Call) -> "asyncio.Task[holds.Ticket]":
    """Start placing the call's hold, in a task of its own: a client that leaves cannot cancel it half-way."""
    # The hold must outlive the call, or the sweeper would return it before the settle (which would then find it
    # closed and charge nothing): it is sized on the call's total time limit, not on the route's read timeout.
    ttl = min(settings.GATEWAY_MAX_CALL_SECONDS + settings.GATEWAY_HOLD_MARGIN_SECONDS, MAX_TTL_SECONDS)
    return background(
        holds.hold_open(
            key=call.key,
            request_id=call.request_id,
            amount_nano=call.hold_nano,
            ttl_seconds=ttl,
            reason=f"{call.endpoint} {call.model.slug}",
            workflow=call.workflow,
        )
    )


async def _hold_finish(call: Call, task: "asyncio.Task[holds.Ticket]") -> None:
    try:
        call.ticket = await asyncio.shield(task)
    except (holds.CreditShort, BudgetShort) as exc:
        refund_tokens(call, used_tokens=0)  # refused: the call used none of the tokens it was admitted with
        refusal = refusals.refusal(call, exc)
        if isinstance(exc, holds.CreditShort):  # off the hot path: only refused calls read this
            suspension = await orm_call(invoicing_selectors.suspension_of, organization_id=call.key.organization_id)
            if suspension is not None:
                refusal = refusals.suspended_refusal(refusal, suspension.invoice)
        raise refusal from None
    except asyncio.CancelledError:
        # The client left while the hold was being placed: release it once placed, and record the call.
        task.add_done_callback(lambda done: _release_abandoned(call, done))
        raise


def _release_abandoned(call: Call, done: "asyncio.Task[holds.Ticket]") -> None:
    if done.cancelled() or done.exception() is not None:
        return
    call.ticket = done.result()
    background(holds.hold_cancel(call.ticket, row=call.row(UsageStatus.CLIENT_DISCONNECTED)))


def _release_unwanted(call: Call, done: "asyncio.Task[holds.Ticket]", *, client_left: bool) -> None:
    """The hold placed beside an admission that did not let the call through: released once placed."""
    if client_left:
        _release_abandoned(call, done)  # recorded, as when the client leaves during a hold
    elif not done.cancelled() and done.exception() is None:  # a refused hold has nothing to give back
        ticket = done.result()
        reason = f"{call.endpoint} {call.model.slug} rate limited"
        background(holds.hold_withdraw(ticket, actor=f"key:{call.key.id}", reason=reason))


def release_on_error(call: Call) -> None:
    """After an unexpected error between hold and settle: release the hold now rather than at its deadline."""
    if call.ticket is not None and not call.settling:
        background(settle_nothing(call, UsageStatus.UPSTREAM_ERROR))


def prepare_route(call: Call, route: upstreams.Route) -> None:
    """Set the call's route and its deadline: GATEWAY_MAX_CALL_SECONDS from now, whatever the route's timeout."""
    call.route = route
    call.deadline = asyncio.get_running_loop().time() + settings.GATEWAY_MAX_CALL_SECONDS


async def upstream_answer(call: Call, answer: Awaitable[T]) -> T:
    """Await the model server's answer (or the opening of its stream). A failure of the server releases the hold
    and becomes the call's error (settle_failure); a client that leaves before the answer was delivered nothing
    and is charged nothing."""
    try:
        return await answer
    except upstreams.UpstreamFailure as failure:
        raise await settle_failure(call, failure) from None
    except asyncio.CancelledError:
        background(settle_nothing(call, UsageStatus.CLIENT_DISCONNECTED))
        raise


# --- settle and answer ----------------------------------------------------------------------------------------


async def settle_failure(call: Call, failure: upstreams.UpstreamFailure) -> GatewayError:
    """Release the hold of a call the upstream failed, record it, and say what happened (502/504/400)."""
    status = UsageStatus.UPSTREAM_TIMEOUT if failure.timeout else UsageStatus.UPSTREAM_ERROR
    await settle_nothing(call, status)
    if failure.client_error:
        return GatewayError(400, failure.message, code="upstream_rejected_request", headers=answer_headers(call))
    return GatewayError(
        504 if failure.timeout else 502,
        failure.message,
        error_type="api_error",
        code="upstream_timeout" if failure.timeout else "upstream_error",
        headers=answer_headers(call),
    )


async def settle_nothing(call: Call, status: str) -> holds.Charge:
    assert call.ticket is not None
    call.settling = True
    charge = await holds.settle(ticket=call.ticket, context=None, usage=None, row=call.row(status), at=None)
    call.headers.update(billing_headers(call, charge))
    refund_tokens(call, used_tokens=0)
    return charge


async def settle_usage(call: Call, measured: Measured, status: str) -> holds.Charge:
    assert call.ticket is not None
    call.settling = True
    charge = await holds.settle(
        ticket=call.ticket,
        context=call.context,
        usage=usage_of(call, measured),
        row=measured_row(call, measured, status),
        at=call.at,
    )
    call.headers.update(billing_headers(call, charge))
    refund_tokens(call, used_tokens=measured.input_tokens + measured.output_tokens)
    return charge


def refund_tokens(call: Call, *, used_tokens: int) -> None:
    if call.admission is not None and call.admission.charged:
        ratelimit.refund(call.admission, used_tokens=used_tokens)


def billing_headers(call: Call, charge: holds.Charge) -> dict[str, str]:
    headers = {
        "x-billing-charge": format_amount(charge.charge_nano),
        "x-billing-charge-nano": str(charge.charge_nano),
        "x-billing-currency": call.context.currency,
    }
    if charge.available_nano is not None:
        headers["x-billing-balance-remaining"] = format_amount(charge.available_nano)
        headers["x-billing-balance-remaining-nano"] = str(charge.available_nano)
    return headers


def answer_headers(call: Call) -> dict[str, str]:
    return {
        "x-request-id": call.request_id,
        "openai-processing-ms": str(call.latency_ms()),
        "x-billing-workflow": call.workflow,
        **call.headers,
    }


def with_headers(response: HttpResponseBase, headers: dict[str, str]) -> HttpResponseBase:
    for name, value in headers.items():
        response[name] = value
    return response


async def start(
    *,
    started: float,
    key: AuthenticatedKey,
    endpoint: str,
    model_slug: str,
    kind: str | None,
    workflow: str,
    service_tier: str,
) -> Call:
    """Resolve the model (404/403/400) and the caller's pricing context; a Call with no tokens counted yet."""
    model = await catalog.model_get(model_slug, kind=kind)
    if not key.allows_model(model.slug):
        raise GatewayError(
            403,
            f"This API key is not allowed to use the model '{model.slug}'.",
            error_type="permission_error",
            code="model_not_allowed",
            param="model",
        )
    context = await catalog.pricing_context_get(organization_id=key.organization_id, model_slug=model.slug)
    return Call(
        request_id=request_id_new(),
        started=started,
        at=timezone.now(),
        key=key,
        endpoint=endpoint,
        model=model,
        context=context,
        workflow=workflow,
        service_tier=service_tier,
        prompt_tokens=0,
        max_tokens=0,
    )
