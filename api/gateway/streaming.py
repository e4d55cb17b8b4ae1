"""Streamed chat completions: relay the model server's events to the client, counting output as it flows.

- Output is counted per choice with tiktoken as it passes. A server that goes past max_tokens is cut there: the
  choice ends with finish_reason "length", reading stops, and the call is charged for the prompt and what was
  delivered (status "cut").
- The gateway always asks the server for usage (stream_options.include_usage); the client gets a usage chunk
  only if it asked, with the billed figures (the server's, or tiktoken's when the server sent none) and a
  `billing` object (charge, balance left), since headers went out before the charge was known.
- The client is answered only once the server's first chunk with a choice has come (`Relay.begin`): a server that
  answers 200 with something other than an event stream (another content type, lines that are not server-sent
  events, an event that is not a chunk), or whose stream fails, stalls or ends before that chunk, is the call's
  error like any upstream failure: HTTP 502 (504 for a timeout), the hold released, nothing charged.
- After that the status line is gone. A server that fails mid-stream (an error event, a malformed event, a dropped
  connection, a stall longer than its route's timeout between chunks, or a body that ends while a choice has no
  finish_reason) releases the hold: nothing is charged, though the client keeps what it was sent (the failure is
  the server's, and a failed call is never charged), and the stream ends with an error event, which the openai SDK
  raises as APIError.
- A stream still running at the call's time limit (GATEWAY_MAX_CALL_SECONDS), however steadily it trickles, is cut
  there: reading stops, the call is charged for the prompt and the output delivered (status "cut"), and the stream
  ends with the usage chunk (if asked for) and an error event saying so. The hold is sized on that limit, so it is
  still open for this settle. A relay stuck sending to a client too slow to take the stream is settled by its watch
  shortly after the limit, for what it was sent (status "client_disconnected").
- Exactly one settle runs per stream, whichever comes first: the end of the stream, an upstream failure, the time
  limit, the client leaving, or the watch of a relay that never started.
- A client that goes away cancels the relay: the settle then runs in a task of its own, charging the prompt and
  the output delivered so far (status "client_disconnected").
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse

from api.gateway import calls, demo, upstreams
from api.gateway.calls import Call
from api.gateway.params import ChatParams
from billing import tokens
from billing.metering import holds
from billing.usage.models import UsageStatus
from core.background import background
from core.money import format_amount

DONE = b"data: [DONE]\n\n"
# A relay the server never starts (the client left between the answer's headers and its first byte) is settled
# after this long as a disconnect, rather than leaving its hold to the sweeper.
START_GRACE_SECONDS = 10.0
# A relay still unsettled this long after its call's time limit is settled by its watch (see Relay.watch); the
# hold outlives the limit by GATEWAY_HOLD_MARGIN_SECONDS (at least 5 seconds), so it is still open then.
WATCH_GRACE_SECONDS = 2.0


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def delta_text(delta: dict[str, Any]) -> tuple[str, str]:
    """The countable output of a delta: (content, everything else: refusal, tool call names and arguments)."""
    content = delta.get("content")
    content = content if isinstance(content, str) else ""
    other = []
    refusal = delta.get("refusal")
    if isinstance(refusal, str):
        other.append(refusal)
    calls_ = delta.get("tool_calls")
    if isinstance(calls_, list):
        for tool_call in calls_:
            function = tool_call.get("function") if isinstance(tool_call, dict) else None
            if isinstance(function, dict):
                other.extend(str(function.get(k) or "") for k in ("name", "arguments"))
    return content, "".join(other)


@dataclass(slots=True)
class ChoiceState:
    parts: list[str] = field(default_factory=list)
    running: int = 0  # sum of the parts' own counts: an upper bound of the exact count, recounted near the cap
    done: bool = False
    cut: bool = False

    def text(self) -> str:
        return "".join(self.parts)


class Relay:
    def __init__(self, call: Call, chat: ChatParams, answer: upstreams.Answer):
        self.call = call
        self.chat = chat
        self.answer = answer
        self.encoding = call.model.encoding
        self.events = answer.events()
        self.first: dict[str, Any] | None = None  # the first chunk, read before the client was answered
        self.choices: dict[int, ChoiceState] = {}
        self.reported: Any = None
        self.template: dict[str, Any] = {}
        self.settling = False
        self.started = asyncio.Event()
        self.claimed = asyncio.Event()  # set with `settling`: the watch has nothing left to do
        self.loop = asyncio.get_running_loop()

    # --- counting and cutting -------------------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return tokens.text_tokens(text, self.encoding)

    def _take_choice(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        """The choice to send on (possibly cut short), or None to drop it."""
        index = choice.get("index", 0)
        state = self.choices.setdefault(index if isinstance(index, int) else 0, ChoiceState())
        if state.done and state.cut:
            return None
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        content, other = delta_text(delta)
        if choice.get("finish_reason"):
            state.done = True
        if not content and not other:
            return choice
        cap = self.call.max_tokens
        added = self._count(content) + self._count(other)
        if state.running + added <= cap:
            state.running += added
            state.parts.append(content + other)
            return choice
        after = self._count(state.text() + content + other)
        if after <= cap:
            state.running = after
            state.parts.append(content + other)
            return choice
        # Past max_tokens: keep what fits of the text, drop the rest, end this choice.
        kept = ""
        if content:
            before = self._count(state.text())  # counted only here: most chunks near the cap still fit
            if before < cap:
                kept, _ = tokens.truncate_to_tokens(content, cap - before, self.encoding)
        state.parts.append(kept)
        state.done = state.cut = True
        return {"index": index, "delta": {"content": kept} if kept else {}, "logprobs": None, "finish_reason": "length"}

    def take(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event to send on (or None), recording usage and cutting choices past max_tokens."""
        choices = event.get("choices")
        if choices is None and "choices" not in event and isinstance(event.get("usage"), dict):
            choices = []  # a usage chunk that leaves the key out (OpenAI sends "choices": [])
        if not isinstance(choices, list):
            raise upstreams.UpstreamFailure("The model server sent a malformed event; nothing was charged.")
        if "usage" in event:
            if event["usage"]:
                self.reported = event["usage"]
            if self.chat.include_usage:
                event["usage"] = None
            else:
                del event["usage"]
        if not self.template:
            self.template = {k: event.get(k) for k in ("id", "created", "system_fingerprint")}
        if not choices:
            return None  # the usage chunk: the gateway sends its own at the end
        kept = [c for c in (self._take_choice(c) for c in choices if isinstance(c, dict)) if c is not None]
        if not kept:
            return None
        event["choices"] = kept
        event["model"] = self.call.model.slug
        return event

    @property
    def cut(self) -> bool:
        return any(state.cut for state in self.choices.values())

    @property
    def all_cut(self) -> bool:
        return len(self.choices) >= self.chat.n and all(s.cut or s.done for s in self.choices.values()) and self.cut

    def delivered_tokens(self) -> int:
        return sum(self._count(state.text()) for state in self.choices.values())

    # --- settling -----------------------------------------------------------------------------------------------

    def _measured(self, *, trust_report: bool) -> calls.Measured:
        return calls.measure(
            self.reported if trust_report else None,
            estimated_input=self.call.prompt_tokens,
            estimated_output=self.delivered_tokens(),
            output_cap=self.call.output_allowance,
        )

    def _claim_settle(self) -> bool:
        """Whether the caller is the one to settle this stream (True once only)."""
        if self.settling:
            return False
        self.settling = True
        self.claimed.set()
        return True

    async def settle_disconnected(self) -> None:
        await calls.settle_usage(self.call, self._measured(trust_report=False), UsageStatus.CLIENT_DISCONNECTED)

    def _time_limit_error(self, measured: calls.Measured) -> dict[str, Any]:
        message = (
            f"The call reached its time limit of {settings.GATEWAY_MAX_CALL_SECONDS} seconds and the answer was cut "
            f"there; it was charged for the prompt and the {measured.output_tokens} completion tokens delivered."
        )
        return {"error": {"message": message, "type": "api_error", "param": None, "code": "call_time_limit"}}

    def _usage_chunk(self, measured: calls.Measured, charge: holds.Charge) -> dict[str, Any]:
        billing: dict[str, Any] = {
            "request_id": self.call.request_id,
            "charge": format_amount(charge.charge_nano),
            "charge_nano": charge.charge_nano,
            "currency": self.call.context.currency,
        }
        if charge.available_nano is not None:
            billing["balance_remaining"] = format_amount(charge.available_nano)
            billing["balance_remaining_nano"] = charge.available_nano
        return {
            "id": self.template.get("id") or f"chatcmpl-{self.call.request_id}",
            "object": "chat.completion.chunk",
            "created": self.template.get("created") or int(time.time()),
            "model": self.call.model.slug,
            "system_fingerprint": self.template.get("system_fingerprint"),
            "choices": [],
            "usage": measured.usage_object(),
            "billing": billing,
        }

    # --- the relay ----------------------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Settle a relay that never started (see START_GRACE_SECONDS), or one still not settled at the call's time
        limit (a client too slow to take the stream keeps the relay waiting to send): charged for what it was sent,
        before its hold can expire."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.started.wait(), START_GRACE_SECONDS)
        if not self.started.is_set():
            if self._claim_settle():
                await self.answer.aclose()
                await self.settle_disconnected()
            return
        # The relay settles itself at the limit when it is reading; this only acts if it is stuck sending.
        with contextlib.suppress(TimeoutError):
            limit = max(0.0, self.call.deadline - self.loop.time()) + WATCH_GRACE_SECONDS
            await asyncio.wait_for(self.claimed.wait(), limit)
        if self._claim_settle():
            await self.answer.aclose()
            await self.settle_disconnected()

    async def _next(self, events: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
        """The server's next event; None at the end of the stream. TimeoutError at the call's time limit."""
        if self.loop.time() >= self.call.deadline:
            raise TimeoutError
        async with asyncio.timeout_at(self.call.deadline):
            try:
                return await anext(events)
            except StopAsyncIteration:
                return None

    async def begin(self) -> None:
        """Read the server's stream up to its first chunk with a choice, before the client is answered: a stream that
        is malformed, fails or ends before it is the call's UpstreamFailure (502/504, nothing charged)."""
        try:
            while self.first is None:
                event = await self._next(self.events)
                if event is None:
                    raise upstreams.UpstreamFailure(
                        "The model server's stream ended before its first chunk; nothing was charged."
                    )
                self.first = self.take(event)
        except TimeoutError:
            raise upstreams.UpstreamFailure(
                "The model server did not answer in time; nothing was charged.", timeout=True
            ) from None

    def _complete(self) -> bool:
        """Whether every choice the server started was finished (or cut): else its stream broke off."""
        return all(state.done for state in self.choices.values())

    async def run(self) -> AsyncIterator[bytes]:
        self.started.set()
        timed_out = False
        failure: upstreams.UpstreamFailure | None = None
        try:
            try:
                out, self.first = self.first, None
                while True:
                    if out is not None:
                        yield sse(out)
                    if self.settling:
                        return  # settled meanwhile by the watch (the client was too slow to take the stream)
                    if self.all_cut:
                        break
                    event = await self._next(self.events)
                    if event is None:
                        if not self._complete():
                            failure = upstreams.UpstreamFailure(
                                "The model server's stream ended before the answer was complete; nothing was charged."
                            )
                        break
                    out = self.take(event)
            except TimeoutError:
                timed_out = True
            except upstreams.UpstreamFailure as exc:
                failure = exc
            if failure is not None:
                if not self._claim_settle():
                    return
                await calls.settle_nothing(
                    self.call, UsageStatus.UPSTREAM_TIMEOUT if failure.timeout else UsageStatus.UPSTREAM_ERROR
                )
                code = "upstream_timeout" if failure.timeout else "upstream_error"
                yield sse({"error": {"message": failure.message, "type": "api_error", "param": None, "code": code}})
                return
            if not self._claim_settle():
                return
            # Past the time limit the server's usage (if any) is not final: the call pays for what was delivered.
            measured = self._measured(trust_report=not (self.cut or timed_out))
            cut = self.cut or timed_out or measured.capped
            status = UsageStatus.CUT if cut else UsageStatus.OK
            charge = await calls.settle_usage(self.call, measured, status)
            if self.chat.include_usage:
                yield sse(self._usage_chunk(measured, charge))
            if timed_out:
                yield sse(self._time_limit_error(measured))
                return
            yield DONE
        except (asyncio.CancelledError, GeneratorExit):
            if self._claim_settle():
                background(self.settle_disconnected())
            raise
        except Exception:
            if self._claim_settle():
                background(calls.settle_nothing(self.call, UsageStatus.UPSTREAM_ERROR))
            raise
        finally:
            background(self.answer.aclose())


async def _open(call: Call, forward: dict[str, Any]) -> upstreams.Answer:
    route = call.route
    assert route is not None
    if route.kind == upstreams.DEMO:
        return demo.DemoAnswer(forward, encoding=call.model.encoding)
    return await upstreams.open_stream(route, "chat/completions", forward, deadline=call.deadline)


async def stream(call: Call, chat: ChatParams, forward: dict[str, Any]) -> HttpResponseBase:
    """Open the upstream stream and read it up to its first chunk (failing over HTTP before any byte is sent), then
    relay it."""
    answer = await calls.upstream_answer(call, _open(call, forward))
    relay = Relay(call, chat, answer)
    try:
        await calls.upstream_answer(call, relay.begin())
    except BaseException:
        background(answer.aclose())
        raise
    response = StreamingHttpResponse(relay.run(), content_type="text/event-stream")
    background(relay.watch())
    headers = calls.answer_headers(call)
    headers |= {
        "x-billing-hold": format_amount(call.hold_nano),
        "x-billing-hold-nano": str(call.hold_nano),
        "x-billing-currency": call.context.currency,
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    calls.with_headers(response, headers)
    return response
