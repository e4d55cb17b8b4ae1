"""POST /v1/chat/completions: OpenAI's chat completions, metered (hold, forward, settle), plain or streamed."""

import asyncio
import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from api.gateway import calls, demo, metering, params, streaming, upstreams
from api.gateway.calls import Call
from api.gateway.http import GatewayError, gateway_view, key_authenticate
from api.gateway.params import ChatParams
from billing import tokens
from billing.pricing import rating
from billing.usage.models import UsageStatus

# Prompts longer than this (bytes of request body) are counted on a worker thread, not on the event loop.
COUNT_OFF_LOOP_BYTES = 64 * 1024


def _prompt_tokens(chat: ChatParams, encoding: str) -> int:
    return tokens.chat_prompt_tokens(chat.messages, encoding) + tokens.chat_tools_tokens(chat.tools, encoding)


def _limits_check(call: Call, chat: ChatParams) -> None:
    """max_tokens within the model's output limit, and prompt + max_tokens within its context window."""
    model = call.model
    room = model.context_window - call.prompt_tokens
    if chat.max_tokens is not None and chat.max_tokens > model.max_output_tokens:
        raise params.invalid(
            f"{chat.max_tokens_param} is too large: {chat.max_tokens}. The model '{model.slug}' produces at most "
            f"{model.max_output_tokens} completion tokens.",
            param=chat.max_tokens_param,
        )
    if room < 1 or (chat.max_tokens is not None and chat.max_tokens > room):
        asked = chat.max_tokens or 1
        raise GatewayError(
            400,
            f"This model's maximum context length is {model.context_window} tokens. However, you requested "
            f"{call.prompt_tokens + asked} tokens ({call.prompt_tokens} in the messages, {asked} in the "
            "completion). Please reduce the length of the messages or completion.",
            code="context_length_exceeded",
            param="messages",
        )
    # Without max_tokens, the model's default applies, shortened to what the context window leaves.
    call.max_tokens = chat.max_tokens if chat.max_tokens is not None else min(model.default_max_tokens, room)


def _forward_body(body: dict[str, Any], chat: ChatParams, call: Call) -> dict[str, Any]:
    """What the model server gets: the client's request with the upstream's model name, the max_tokens the hold
    covers, and (for streams) a request for usage. Price tiers are the gateway's, not the server's."""
    assert call.route is not None
    forward = dict(body)
    forward["model"] = call.route.upstream_model
    forward[chat.max_tokens_param] = call.max_tokens
    forward.pop("service_tier", None)
    if chat.stream:
        forward["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return forward


@gateway_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="chat")
    body = params.json_body(request)
    chat = params.chat_params(body)
    workflow = params.workflow_of(request, body, key)
    call = await calls.start(
        started=started,
        key=key,
        endpoint="chat",
        model_slug=chat.model,
        kind="chat",
        workflow=workflow,
        service_tier=chat.service_tier,
    )
    call.n = chat.n
    if int(request.headers.get("Content-Length") or 0) > COUNT_OFF_LOOP_BYTES:
        call.prompt_tokens = await asyncio.to_thread(_prompt_tokens, chat, call.model.encoding)
    else:
        call.prompt_tokens = _prompt_tokens(chat, call.model.encoding)
    _limits_check(call, chat)
    call.hold_nano = rating.max_charge_nano(
        prices=call.context.prices,
        prompt_tokens=call.prompt_tokens,
        max_tokens=call.output_allowance,
        service_tier=call.service_tier,
    )
    await calls.admit(call)
    calls.prepare_route(call, await upstreams.route_get(call.model.slug))
    forward = _forward_body(body, chat, call)
    try:
        await calls.hold(call)
    except GatewayError:
        calls.refund_tokens(call, used_tokens=0)
        raise
    try:
        if chat.stream:
            return await streaming.stream(call, chat, forward)
        return await _complete(call, chat, forward)
    except Exception:
        calls.release_on_error(call)
        raise


def _choice_output(choice: dict[str, Any]) -> tuple[str, str]:
    """(content, everything else countable) of a finished choice."""
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content, other = streaming.delta_text(message)
    return content, other


async def _answer(call: Call, forward: dict[str, Any]) -> dict[str, Any]:
    route = call.route
    assert route is not None
    if route.kind == upstreams.DEMO:
        return await demo.chat(forward, encoding=call.model.encoding)
    answer = await upstreams.post_json(route, "chat/completions", forward, deadline=call.deadline)
    choices = answer.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise upstreams.UpstreamFailure("The model server sent a malformed answer; nothing was charged.")
    return answer


async def _complete(call: Call, chat: ChatParams, forward: dict[str, Any]) -> HttpResponseBase:
    try:
        answer = await _answer(call, forward)
    except upstreams.UpstreamFailure as failure:
        raise await calls.settle_failure(call, failure) from None
    except asyncio.CancelledError:
        # The client left before the answer: nothing was delivered, nothing is charged.
        metering.background(calls.settle_nothing(call, UsageStatus.CLIENT_DISCONNECTED))
        raise
    encoding = call.model.encoding
    cut = False
    estimated_output = 0
    for choice in answer["choices"]:
        content, other = _choice_output(choice)
        used = tokens.text_tokens(content, encoding)
        if used > call.max_tokens:
            # The server went past max_tokens: the client gets (and pays for) max_tokens of it.
            content, used = tokens.truncate_to_tokens(content, call.max_tokens, encoding)
            choice["message"]["content"] = content
            choice["finish_reason"] = "length"
            cut = True
        estimated_output += used + tokens.text_tokens(other, encoding)
    measured = calls.measure(
        answer.get("usage"),
        estimated_input=call.prompt_tokens,
        estimated_output=estimated_output,
        output_cap=call.output_allowance,
    )
    cut = cut or (measured.reported and _reported_output(answer) > call.output_allowance)
    await calls.settle_usage(call, measured, UsageStatus.CUT if cut else UsageStatus.OK)
    answer["model"] = call.model.slug
    answer["service_tier"] = call.service_tier
    if not measured.reported or cut:
        answer["usage"] = measured.usage_object()
    response = JsonResponse(answer, json_dumps_params={"separators": (",", ":")})
    return calls.with_headers(response, calls.answer_headers(call))


def _reported_output(answer: dict[str, Any]) -> int:
    usage = answer.get("usage") or {}
    value = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) else 0
