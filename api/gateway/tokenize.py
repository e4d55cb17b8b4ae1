"""POST /v1/tokenize: count tokens the way the gateway bills them, for free.

Send `messages` (and `tools`) as for chat completions to get the prompt tokens of a chat request, with the
model's encoding and OpenAI's chat-format accounting; or `input` (a string or an array of strings) to count
plain text. With the model's limits and the most the call could cost (its hold) at the caller's prices.
"""

import time

from django.http import HttpRequest, JsonResponse

from api.gateway import calls, params
from api.gateway.http import gateway_view, key_authenticate
from billing import tokens
from billing.money import format_amount
from billing.pricing import rating


@gateway_view("POST")
async def tokenize(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    key = await key_authenticate(request, endpoint="tokenize")
    body = params.json_body(request)
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
    if "messages" in body:
        chat = params.chat_params(body)
        call.prompt_tokens = tokens.chat_prompt_tokens(chat.messages, model.encoding) + tokens.chat_tools_tokens(
            chat.tools, model.encoding
        )
        max_tokens = chat.max_tokens or min(model.default_max_tokens, max(model.context_window - call.prompt_tokens, 0))
    elif "input" in body:
        inputs = params.embedding_params(body).inputs
        counts = [tokens.text_tokens(i, model.encoding) if isinstance(i, str) else len(i) for i in inputs]
        call.prompt_tokens = sum(counts)
        result["counts"] = counts
        max_tokens = 0
    else:
        raise params.invalid(
            "Send 'messages' (a chat prompt) or 'input' (text) to count.", code="missing_required_parameter"
        )
    hold = rating.max_charge_nano(
        prices=call.context.prices,
        prompt_tokens=call.prompt_tokens,
        max_tokens=max_tokens,
        service_tier=call.service_tier,
    )
    result |= {
        "prompt_tokens": call.prompt_tokens,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "max_tokens": max_tokens,
        "fits_context": call.prompt_tokens + max_tokens <= model.context_window,
        "max_charge": format_amount(hold),
        "max_charge_nano": hold,
        "currency": call.context.currency,
    }
    response = JsonResponse(result)
    return calls.with_headers(response, calls.answer_headers(call))  # type: ignore[return-value]
