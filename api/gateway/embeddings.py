"""POST /v1/embeddings: OpenAI's embeddings, metered like chat (input tokens only)."""

import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from api.gateway import calls, demo, params, refusal_counts, upstreams
from api.gateway.calls import Call
from api.gateway.http import GatewayError, gateway_view, key_authenticate
from billing import tokens
from billing.pricing import rating
from billing.usage.models import UsageStatus

# The hold covers the counted input plus this margin: an embeddings call has no output allowance to absorb a server
# whose tokenizer counts more than tiktoken (open-weight models are counted with a stand-in encoding), and what
# it reports beyond the hold is not charged.
HOLD_MARGIN_PERCENT = 10
HOLD_MARGIN_TOKENS_PER_INPUT = 4


def held_tokens(counts: list[int]) -> int:
    """The input tokens an embeddings call's hold covers: the counted tokens with a margin (see above)."""
    total = sum(counts)
    return total + -(-total * HOLD_MARGIN_PERCENT // 100) + HOLD_MARGIN_TOKENS_PER_INPUT * len(counts)


def hold_size(call: Call, counts: list[int]) -> int:
    """The most an embeddings call can cost: its counted input with the margin (held_tokens), at the default tier."""
    return rating.max_charge_nano(
        prices=call.context.prices, prompt_tokens=held_tokens(counts), max_tokens=0, service_tier="default"
    )


def input_tokens(inputs: list[str | list[int]], encoding: str) -> list[int]:
    return [tokens.text_tokens(item, encoding) if isinstance(item, str) else len(item) for item in inputs]


async def _answer(call: Call, forward: dict[str, Any], inputs: int) -> dict[str, Any]:
    """The server's answer: one embedding object per input, or UpstreamFailure (nothing charged)."""
    route = call.route
    assert route is not None
    if route.kind == upstreams.DEMO:
        return await demo.embeddings(forward, encoding=call.model.encoding)
    answer = await upstreams.post_json(route, "embeddings", forward, deadline=call.deadline)
    data = answer.get("data")
    if not isinstance(data, list) or len(data) != inputs or not all(isinstance(item, dict) for item in data):
        raise upstreams.UpstreamFailure("The model server sent a malformed answer; nothing was charged.")
    return answer


@gateway_view("POST")
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="embeddings")
    body, body_bytes = params.json_body(request)
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
    counts = await calls.counted(body_bytes, input_tokens, embedding.inputs, call.model.encoding)
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
    call.hold_nano = hold_size(call, counts)
    calls.prepare_route(call, await upstreams.route_get(call.model.slug))
    assert call.route is not None
    forward = dict(body) | {"model": call.route.upstream_model}
    # Embeddings are priced at the default tier, and OpenAI's embeddings endpoint knows no service_tier.
    forward.pop("service_tier", None)
    try:
        await calls.admit_and_hold(call)
    except GatewayError as refused:
        refusal_counts.refusal_count(call, refused)
        raise
    answer = await calls.upstream_answer(call, _answer(call, forward, len(embedding.inputs)))
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
