"""POST /v1/embeddings: OpenAI's embeddings, metered like chat (input tokens only)."""

import asyncio
import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from api.gateway import calls, demo, metering, params, upstreams
from api.gateway.calls import Call
from api.gateway.http import GatewayError, gateway_view, key_authenticate
from billing import tokens
from billing.pricing import rating
from billing.usage.models import UsageStatus


def _input_tokens(inputs: list[str | list[int]], encoding: str) -> list[int]:
    return [tokens.text_tokens(item, encoding) if isinstance(item, str) else len(item) for item in inputs]


async def _answer(call: Call, forward: dict[str, Any]) -> dict[str, Any]:
    route = call.route
    assert route is not None
    if route.kind == upstreams.DEMO:
        return await demo.embeddings(forward, encoding=call.model.encoding)
    answer = await upstreams.post_json(route, "embeddings", forward, deadline=call.deadline)
    if not isinstance(answer.get("data"), list):
        raise upstreams.UpstreamFailure("The model server sent a malformed answer; nothing was charged.")
    return answer


@gateway_view("POST")
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="embeddings")
    body = params.json_body(request)
    embedding = params.embedding_params(body)
    workflow = params.workflow_of(request, body, key)
    call = await calls.start(
        started=started,
        key=key,
        endpoint="embeddings",
        model_slug=embedding.model,
        kind="embedding",
        workflow=workflow,
        service_tier="default",
    )
    counts = await asyncio.to_thread(_input_tokens, embedding.inputs, call.model.encoding)
    for index, count in enumerate(counts):
        if count > call.model.context_window:
            raise GatewayError(
                400,
                f"input[{index}] has {count} tokens; the model '{call.model.slug}' takes at most "
                f"{call.model.context_window} tokens per input.",
                code="context_length_exceeded",
                param="input",
            )
    call.prompt_tokens = sum(counts)
    call.hold_nano = rating.max_charge_nano(
        prices=call.context.prices, prompt_tokens=call.prompt_tokens, max_tokens=0, service_tier="default"
    )
    await calls.admit(call)
    calls.prepare_route(call, await upstreams.route_get(call.model.slug))
    assert call.route is not None
    forward = dict(body) | {"model": call.route.upstream_model}
    try:
        await calls.hold(call)
    except GatewayError:
        calls.refund_tokens(call, used_tokens=0)
        raise
    try:
        answer = await _answer(call, forward)
    except upstreams.UpstreamFailure as failure:
        raise await calls.settle_failure(call, failure) from None
    except asyncio.CancelledError:
        metering.background(calls.settle_nothing(call, UsageStatus.CLIENT_DISCONNECTED))
        raise
    try:
        measured = calls.measure(
            answer.get("usage"), estimated_input=call.prompt_tokens, estimated_output=0, output_cap=0
        )
        await calls.settle_usage(call, measured, UsageStatus.OK)
    except Exception:
        calls.release_on_error(call)
        raise
    answer["model"] = call.model.slug
    if not measured.reported:
        answer["usage"] = {"prompt_tokens": measured.input_tokens, "total_tokens": measured.input_tokens}
    response = JsonResponse(answer, json_dumps_params={"separators": (",", ":")})
    return calls.with_headers(response, calls.answer_headers(call))
