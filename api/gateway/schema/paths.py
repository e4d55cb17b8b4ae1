"""The /v1 operations in the OpenAPI schema: one path each, with its body, answers, errors and headers."""

from typing import Any

from api.gateway import embeddings, params
from api.gateway.schema.responses import JSON, METERED_HEADERS, RATE_LIMIT_HEADERS, errors, header_refs, ref

TAGS = [
    {"name": "chat", "description": "Chat completions, plain or streamed, metered by the token."},
    {"name": "embeddings", "description": "Embeddings, charged for the input tokens."},
    {"name": "models", "description": "The models an API key may call, with the organization's prices."},
    {"name": "tokenize", "description": "Count tokens and the most a call can cost, free."},
    {"name": "balance", "description": "The organization's prepaid credit."},
    {"name": "usage events", "description": "Usage of inference run elsewhere, reported server to server."},
]


WORKFLOW_HEADER = {
    "name": params.WORKFLOW_HEADER,
    "in": "header",
    "required": False,
    "schema": ref("Workflow"),
    "description": "Attribute the call's cost to a workflow (instead of `metadata.workflow` or the key's own).",
}
SECURITY: list[dict[str, list[str]]] = [{"apiKeyAuth": []}]


def json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(schema)}}}


def ok(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-9f2c","object":"chat.completion.chunk","created":1732400000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-9f2c","object":"chat.completion.chunk","created":1732400000,"model":"gpt-4o-mini",'
    '"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21},'
    '"billing":{"request_id":"req_5b1c","charge":"0.0000072","charge_nano":7200,"currency":"USD",'
    '"balance_remaining":"19.9999928","balance_remaining_nano":19999992800}}\n\n'
    "data: [DONE]\n\n"
)


def operation(operation_id: str, tag: str, summary: str, description: str, **rest: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "security": SECURITY,
        **rest,
    }


PATHS: dict[str, Any] = {
    "/v1/chat/completions": {
        "post": operation(
            "v1_chat_completions",
            "chat",
            "Create a chat completion",
            "OpenAI's chat completions, metered: the prompt is counted, credit is held for the most the call can "
            "cost (prompt + `max_tokens` times `n` at the output price), the call goes to the model's server, and the "
            "charge for the usage it reports is captured from the hold. With `stream: true` the answer is "
            "server-sent events; the charge of a stream is in its last chunk's `billing` (with "
            '`stream_options.include_usage`). A stream that fails after it started ends with a `data: {"error": '
            "...}` event, and nothing is charged for it.",
            parameters=[WORKFLOW_HEADER],
            requestBody=json_body("ChatCompletionRequest"),
            responses={
                "200": {
                    "description": "The completion; the charge and the balance left are in the headers. A stream's "
                    "headers carry the hold instead.",
                    "headers": METERED_HEADERS | header_refs("x-billing-hold", "x-billing-hold-nano"),
                    "content": {
                        JSON: {"schema": ref("ChatCompletion")},
                        "text/event-stream": {
                            "schema": {"type": "string", "description": "`data:` events of ChatCompletionChunk."},
                            "example": STREAM_EXAMPLE,
                        },
                    },
                },
                **errors(400, 401, 402, 403, 404, 405, 413, 429, 500, 502, 504),
            },
        )
    },
    "/v1/embeddings": {
        "post": operation(
            "v1_embeddings",
            "embeddings",
            "Create embeddings",
            "OpenAI's embeddings, charged for the input tokens. The hold covers the counted input plus "
            f"{embeddings.HOLD_MARGIN_PERCENT}% and {embeddings.HOLD_MARGIN_TOKENS_PER_INPUT} tokens per input.",
            parameters=[WORKFLOW_HEADER],
            requestBody=json_body("EmbeddingRequest"),
            responses={
                "200": ok("The embeddings; the charge and the balance left are in the headers.", "EmbeddingList")
                | {"headers": METERED_HEADERS},
                **errors(400, 401, 402, 403, 404, 405, 413, 429, 500, 502, 504),
            },
        )
    },
    "/v1/models": {
        "get": operation(
            "v1_models_list",
            "models",
            "List models",
            "The models the API key may call, each with its limits and the caller's prices.",
            responses={"200": ok("The models.", "ModelList"), **errors(401, 403, 405, 500)},
        )
    },
    "/v1/models/{model}": {
        "get": operation(
            "v1_models_retrieve",
            "models",
            "Retrieve a model",
            "One model, as in the list.",
            parameters=[
                {
                    "name": "model",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "example": "gpt-4o",
                    "description": "A model id.",
                }
            ],
            responses={"200": ok("The model.", "Model"), **errors(401, 403, 404, 405, 500)},
        )
    },
    "/v1/tokenize": {
        "post": operation(
            "v1_tokenize",
            "tokenize",
            "Count tokens",
            "Counts tokens exactly as the gateway does before a call, and says the most that call could cost "
            "(`max_charge`, the hold it would place). Free; rate limited like any request.",
            requestBody=json_body("TokenizeRequest"),
            responses={
                "200": ok("The counts and the hold.", "Tokenized", header_refs("x-request-id", *RATE_LIMIT_HEADERS)),
                **errors(400, 401, 403, 404, 405, 413, 429, 500),
            },
        )
    },
    "/v1/balance": {
        "get": operation(
            "v1_balance",
            "balance",
            "Read the balance",
            "The organization's available, held and soon-expiring credit.",
            responses={"200": ok("The balance.", "Balance"), **errors(401, 403, 405, 500)},
        )
    },
    "/v1/budgets": {
        "get": operation(
            "v1_budgets",
            "balance",
            "Read the budgets",
            "The organization's budgets (its own, its workflows', its keys') with what each spent, holds and has "
            "left in its current period, and when it resets. Read-only: a key cannot change the budgets that cap "
            "it (people change them in the web UI or at /api/budgets/). Keys allowed the balance endpoint may "
            "read it.",
            responses={"200": ok("The budgets.", "BudgetList"), **errors(401, 403, 405, 500)},
        )
    },
    "/v1/usage/events": {
        "post": operation(
            "v1_usage_events",
            "usage events",
            "Report usage events",
            "Each event is rated at the organization's prices, paid from its credit, and recorded as usage, all of "
            "it or nothing of it; the answer has a result per event, in order. An event id seen before answers "
            "`duplicate` with its first charge and charges nothing. A batch with rejected events still answers "
            "200; only a batch that is not an array of events, is too long (more than "
            "GATEWAY_USAGE_EVENTS_MAX_BATCH, default 500), or holds a NUL character or an integer beyond 64 bits "
            "is refused whole with a 400.",
            requestBody=json_body("UsageEventsRequest"),
            responses={
                "200": ok("A result per event.", "UsageEventsResult"),
                **errors(400, 401, 403, 405, 413, 500),
            },
        )
    },
}
