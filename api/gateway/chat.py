"""POST /v1/chat/completions: OpenAI's chat completions, metered (hold, forward, settle), plain or streamed."""

import time
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from api.gateway import calls, demo, params, refusal_counts, streaming, upstreams
from api.gateway.calls import Call
from api.gateway.http import GatewayError, gateway_view, key_authenticate
from api.gateway.params import ChatParams
from billing import tokens
from billing.pricing import rating
from billing.usage.models import UsageStatus

T = TypeVar("T")


# Request fields that add nothing to the prompt a model server bills (sampling and output controls, the
# gateway's own fields). Every other field (response_format, tools, functions, tool_choice, prediction, fields
# the gateway does not know) is counted as its JSON: the hold must not be lower than what the server bills.
_UNBILLED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "stop",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "user",
        "service_tier",
        "metadata",
        "store",
        "parallel_tool_calls",
    }
)


def published_prompt_tokens(chat: ChatParams, encoding: str) -> int:
    """OpenAI's published chat-format count of the messages and tool definitions (what /v1/tokenize reports as
    prompt_tokens); the hold covers more (prompt_tokens below)."""
    return tokens.chat_prompt_tokens(chat.messages, encoding) + tokens.chat_tools_tokens(chat.tools, encoding)


def prompt_tokens(chat: ChatParams, body: dict[str, Any], encoding: str) -> int:
    """The prompt tokens a chat request is held and estimated for (/v1/tokenize counts with this too): OpenAI's
    chat-format count of the messages, each image at what it can be billed at most, tools at the larger of OpenAI's
    published accounting and their JSON (which covers nested parameters the accounting leaves out), and the JSON
    of every other field that can reach the prompt."""
    total = tokens.chat_prompt_tokens(chat.messages, encoding) + tokens.chat_images_tokens(chat.messages)
    if chat.tools:
        total += max(tokens.chat_tools_tokens(chat.tools, encoding), tokens.json_tokens(chat.tools, encoding))
    extra = {name: value for name, value in body.items() if name not in _UNBILLED_FIELDS and value is not None}
    if extra:
        total += tokens.json_tokens(extra, encoding)
    return total


def max_tokens_check(call: Call, chat: ChatParams) -> None:
    """max_tokens within the model's output limit (/v1/tokenize refuses the same values)."""
    model = call.model
    if chat.max_tokens is not None and chat.max_tokens > model.max_output_tokens:
        raise params.invalid(
            f"{chat.max_tokens_param} is too large: {chat.max_tokens}. The model '{model.slug}' produces at most "
            f"{model.max_output_tokens} completion tokens.",
            param=chat.max_tokens_param,
        )


def max_tokens_of(call: Call, chat: ChatParams) -> int:
    """The max_tokens the hold covers (per choice): the request's; without one the model's default, shortened to
    what the context window leaves."""
    if chat.max_tokens is not None:
        return chat.max_tokens
    return min(call.model.default_max_tokens, max(call.model.context_window - call.prompt_tokens, 0))


def hold_size(call: Call) -> int:
    """The most the call can cost: its prompt and max_tokens for each of its n choices, at its tier."""
    return rating.max_charge_nano(
        prices=call.context.prices,
        prompt_tokens=call.prompt_tokens,
        max_tokens=call.output_allowance,
        service_tier=call.service_tier,
    )


def _limits_check(call: Call, chat: ChatParams) -> None:
    """max_tokens within the model's output limit, and prompt + max_tokens within its context window."""
    model = call.model
    room = model.context_window - call.prompt_tokens
    max_tokens_check(call, chat)
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
    call.max_tokens = max_tokens_of(call, chat)


def _forward_body(body: dict[str, Any], chat: ChatParams, call: Call) -> dict[str, Any]:
    """What the model server gets: the client's request with the upstream's model name, the max_tokens the hold
    covers, and (for streams) a request for usage.

    `service_tier` goes only to a server configured as honouring it (OpenAI itself): others reject or ignore a
    parameter they do not know, and the tier is the gateway's price tier whether or not the server acts on it.
    """
    assert call.route is not None
    forward = dict(body)
    forward["model"] = call.route.upstream_model
    forward[chat.max_tokens_param] = call.max_tokens
    if not call.route.forwards_service_tier:
        forward.pop("service_tier", None)
    if chat.stream:
        forward["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return forward


@gateway_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="chat")
    body, body_bytes = params.json_body(request)
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
    call.prompt_tokens = await calls.counted(body_bytes, prompt_tokens, chat, body, call.model.encoding)
    _limits_check(call, chat)
    call.hold_nano = hold_size(call)
    calls.prepare_route(call, await upstreams.route_get(call.model.slug))
    forward = _forward_body(body, chat, call)
    try:
        await calls.admit_and_hold(call)
    except GatewayError as refused:
        refusal_counts.refusal_count(call, refused)
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
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise upstreams.UpstreamFailure("The model server sent a malformed answer; nothing was charged.")
    return answer


async def _complete(call: Call, chat: ChatParams, forward: dict[str, Any]) -> HttpResponseBase:
    answer = await calls.upstream_answer(call, _answer(call, forward))
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
    cut = cut or measured.capped
    await calls.settle_usage(call, measured, UsageStatus.CUT if cut else UsageStatus.OK)
    answer["model"] = call.model.slug
    answer["service_tier"] = call.service_tier
    if not measured.reported or cut:
        answer["usage"] = measured.usage_object()
    response = JsonResponse(answer, json_dumps_params={"separators": (",", ":")})
    return calls.with_headers(response, calls.answer_headers(call))
