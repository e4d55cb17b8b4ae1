"""POST /v1/tokenize: count tokens the way the gateway bills them, for free.

Send `messages` (and `tools`) as for chat completions to get the prompt tokens of a chat request, with the
model's encoding and OpenAI's chat-format accounting; or `input` (a string or an array of strings) to count
plain text. With the model's limits and the most the call could cost (its hold) at the caller's prices. A large
request is counted off the event loop, as chat counts it.
"""

import time

from django.http import HttpRequest, JsonResponse

from api.gateway import calls, chat, embeddings, params
from api.gateway.http import gateway_view, key_authenticate
from core.money import format_amount


@gateway_view("POST")
async def tokenize(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="tokenize")
    body, body_bytes = params.json_body(request)
    call = await calls.start(
        started=started,
        key=key,
        endpoint="tokenize",
        model_slug=params.required_str(body, "model"),
        kind=None,
        workflow=key.workflow,
        service_tier=params.service_tier_of(body),
    )
    model = call.model
    await calls.admit(call)  # requests only: counting costs no tokens
    result: dict[str, object] = {"object": "tokenize", "model": model.slug, "encoding": model.encoding}
    # The same counting, max_tokens rules and hold as the chat and embeddings endpoints, so the hold a call
    # will place can be predicted exactly.
    if "messages" in body:
        asked = params.chat_params(body)
        call.n = asked.n
        # prompt_tokens: OpenAI's published count; the hold covers more (images, schemas, unknown fields).
        call.prompt_tokens = held = await calls.counted(body_bytes, chat.prompt_tokens, asked, body, model.encoding)
        result["prompt_tokens"] = await calls.counted(body_bytes, chat.published_prompt_tokens, asked, model.encoding)
        chat.max_tokens_check(call, asked)
        call.max_tokens = chat.max_tokens_of(call, asked)
        max_tokens = call.max_tokens
        hold = chat.hold_size(call)
        # As chat refuses it: at least one completion token must fit after the prompt.
        fits = 1 <= max_tokens <= model.context_window - call.prompt_tokens
        result["n"] = call.n
    elif "input" in body:
        inputs = params.embedding_params(body).inputs
        counts = await calls.counted(body_bytes, embeddings.input_tokens, inputs, model.encoding)
        call.prompt_tokens = sum(counts)
        held = embeddings.held_tokens(counts)  # with the embeddings hold's margin
        result |= {"counts": counts, "prompt_tokens": call.prompt_tokens}
        max_tokens = 0
        fits = all(count <= model.context_window for count in counts)  # embeddings limit each input
        hold = embeddings.hold_size(call, counts)
    else:
        raise params.invalid(
            "Send 'messages' (a chat prompt) or 'input' (text) to count.", code="missing_required_parameter"
        )
    result |= {
        "held_prompt_tokens": held,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "max_tokens": max_tokens,
        "fits_context": fits,
        "max_charge": format_amount(hold),
        "max_charge_nano": hold,
        "currency": call.context.currency,
    }
    response = JsonResponse(result)
    return calls.with_headers(response, calls.answer_headers(call))  # type: ignore[return-value]
