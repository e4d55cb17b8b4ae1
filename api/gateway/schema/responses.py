"""Parts every /v1 operation shares in the OpenAPI schema: references, the response headers, and the error
responses in OpenAI's shape, each with an example."""

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def amount(description: str, example: str) -> dict[str, Any]:
    return {"type": "string", "description": f"{description} (decimal, main currency unit)", "example": example}


def nano(description: str, example: int) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "description": f"{description} in nano-units", "example": example}


def header(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string", "example": example}}


HEADERS: dict[str, dict[str, Any]] = {
    "x-request-id": header("The call's id, also its usage record's request_id.", "req_5b1c2f0e9a7d4c3b"),
    "x-billing-charge": header("What the call cost, in the currency's main unit.", "0.0000072"),
    "x-billing-charge-nano": header("What the call cost, in nano-units.", "7200"),
    "x-billing-balance-remaining": header("Available credit after the call.", "19.9999928"),
    "x-billing-balance-remaining-nano": header("Available credit after the call, in nano-units.", "19999992800"),
    "x-billing-currency": header("The currency of the charge and balance.", "USD"),
    "x-billing-hold": header(
        "Streams: the most the stream can cost (its charge comes in the last chunk's `billing`).", "0.04096"
    ),
    "x-billing-hold-nano": header("Streams: the hold in nano-units.", "40960000"),
    "x-billing-workflow": header("The workflow the usage is attributed to.", "nightly-eval"),
    "x-ratelimit-limit-requests": header("Requests allowed per minute.", "3000"),
    "x-ratelimit-remaining-requests": header("Requests left in the current minute.", "2999"),
    "x-ratelimit-reset-requests": header("Until the request limit is full again.", "20ms"),
    "x-ratelimit-limit-tokens": header("Tokens allowed per minute.", "2000000"),
    "x-ratelimit-remaining-tokens": header("Tokens left in the current minute.", "1995904"),
    "x-ratelimit-reset-tokens": header("Until the token limit is full again.", "122ms"),
    "retry-after": header("Seconds to wait before trying again.", "1"),
    "retry-after-ms": header("Milliseconds to wait before trying again.", "850"),
    "x-should-retry": header("`false`: the same request will be refused again.", "false"),
    "openai-processing-ms": header("Time spent in the gateway and the model server.", "412"),
}
RATE_LIMIT_HEADERS = [name for name in HEADERS if name.startswith("x-ratelimit-")]
CHARGE_HEADERS = [
    "x-billing-charge",
    "x-billing-charge-nano",
    "x-billing-balance-remaining",
    "x-billing-balance-remaining-nano",
    "x-billing-currency",
]


def header_refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


METERED_HEADERS = header_refs("x-request-id", *CHARGE_HEADERS, "x-billing-workflow", *RATE_LIMIT_HEADERS)
METERED_HEADERS |= header_refs("openai-processing-ms")


def error_example(message: str, error_type: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"value": {"error": {"message": message, "type": error_type, "param": param, "code": code}}}


def error(description: str, examples: dict[str, dict[str, Any]], headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ref("Error"), "examples": examples}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": error(
        "Malformed JSON, a wrong type, a missing or out-of-range parameter, a prompt beyond the context window, or "
        "a request the model server refused. Nothing is held or charged; `param` names the field.",
        {
            "invalid_value": error_example(
                "'temperature' must be between 0 and 2; got 3.", "invalid_request_error", "invalid_value", "temperature"
            ),
            "context_length_exceeded": error_example(
                "This model's maximum context length is 128000 tokens. However, you requested 130012 tokens (12 in "
                "the messages, 130000 in the completion). Please reduce the length of the messages or completion.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
            "invalid_json": error_example(
                "The request body must be a JSON object.", "invalid_request_error", "invalid_json"
            ),
        },
    ),
    "Unauthorized": error(
        "No API key, or one that is unknown, revoked or expired.",
        {
            "invalid_api_key": error_example(
                "Incorrect API key provided, or the key was revoked or has expired. You can find your API keys on "
                "the API keys page.",
                "invalid_request_error",
                "invalid_api_key",
            ),
            "missing_api_key": error_example(
                "You didn't provide an API key. Send it in the Authorization header: 'Authorization: Bearer "
                "sk-tb-...'.",
                "invalid_request_error",
                "missing_api_key",
            ),
        },
    ),
    "PaymentRequired": error(
        "Not enough credit for the call's hold, the key's spend limit for its period is reached, or a hard budget "
        "(the organization's, the workflow's, the key's) would be passed (`budget_exceeded`). The message names "
        "the largest `max_tokens` that fits; `error.details` (RefusalDetails) says the same for programs. Nothing "
        "is held or charged.",
        {
            "budget_exceeded": {
                "value": {
                    "error": {
                        "message": "The workflow 'agents's budget per day is reached: this request can cost up to "
                        "0.00074052 USD (14 prompt tokens and max_tokens=4100) and 0.0002 USD is left. The largest "
                        "max_tokens it affords is 1097. The budget is 0.05 USD per day; it resets at "
                        "2026-12-07T00:00:00Z.",
                        "type": "insufficient_quota",
                        "param": "max_tokens",
                        "code": "budget_exceeded",
                        "details": {
                            "reason": "budget",
                            "currency": "USD",
                            "available": {"amount": "0.0002", "amount_nano": 200000},
                            "required": {"amount": "0.00074052", "amount_nano": 740520},
                            "prompt_tokens": 14,
                            "max_tokens": 4100,
                            "n": 1,
                            "affordable_max_tokens": 1097,
                            "prices": {
                                "model": "llama-3.1-8b-instruct",
                                "unit": "per_million_tokens",
                                "input": "0.18",
                                "cached_input": "0.18",
                                "output": "0.18",
                                "request_fee": "0.00",
                                "service_tier": "default",
                                "service_tier_factor_bps": 10000,
                            },
                            "resets_at": "2026-12-07T00:00:00Z",
                            "add_credit_url": "https://billing.example.com/billing/top-up/",
                            "budget": {
                                "id": 7,
                                "scope": "workflow",
                                "workflow": "agents",
                                "api_key_id": None,
                                "period": "day",
                                "mode": "hard",
                                "amount": {"amount": "0.05", "amount_nano": 50000000},
                                "used": {"amount": "0.0498", "amount_nano": 49800000},
                                "resets_at": "2026-12-07T00:00:00Z",
                            },
                        },
                    }
                }
            },
            "insufficient_credit": error_example(
                "Not enough credit: this request can cost up to 0.0409875 USD (11 prompt tokens and "
                "max_tokens=4096) and 0.001 USD is left. The largest max_tokens it affords is 97. Add credit to "
                "continue.",
                "insufficient_quota",
                "insufficient_credit",
                "max_tokens",
            ),
        },
        header_refs("x-request-id", "x-should-retry"),
    ),
    "Forbidden": error(
        "The API key may not call this endpoint or this model.",
        {
            "endpoint_not_allowed": error_example(
                "This API key is not allowed to call the chat endpoint; allowed: embeddings.",
                "permission_error",
                "endpoint_not_allowed",
            ),
            "model_not_allowed": error_example(
                "This API key is not allowed to use the model 'gpt-4o'.",
                "permission_error",
                "model_not_allowed",
                "model",
            ),
        },
    ),
    "NotFound": error(
        "An unknown model (or one the key cannot see), or an unknown path under /v1.",
        {
            "model_not_found": error_example(
                "The model 'gpt-5-nano' does not exist or you do not have access to it. GET /v1/models lists the "
                "models you can call.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        },
    ),
    "MethodNotAllowed": error(
        "The wrong HTTP method for this path.",
        {
            "method_not_allowed": error_example(
                "GET is not allowed here; use POST.", "invalid_request_error", "method_not_allowed"
            )
        },
        {"Allow": header("The methods this path allows.", "POST")},
    ),
    "RequestTooLarge": error(
        "The body is larger than the server's GATEWAY_MAX_BODY_BYTES.",
        {
            "request_too_large": error_example(
                "The request body is larger than 8388608 bytes.", "invalid_request_error", "request_too_large"
            )
        },
    ),
    "RateLimited": error(
        "Over the organization's (or the key's) requests or tokens per minute; wait `retry-after` seconds. A "
        "single request larger than the token limit is refused with `x-should-retry: false`.",
        {
            "rate_limit_exceeded": error_example(
                "Rate limit reached for requests or tokens per minute; try again in 850ms. Limits: 3000 requests and "
                "2000000 tokens per minute.",
                "rate_limit_exceeded",
                "rate_limit_exceeded",
            )
        },
        header_refs("retry-after", "retry-after-ms", "x-should-retry", *RATE_LIMIT_HEADERS),
    ),
    "ServerError": error(
        "A fault of the gateway itself (logged). Nothing is charged.",
        {
            "internal_error": error_example(
                "The server had an error while processing your request. Nothing was charged for it.",
                "server_error",
                "internal_error",
            )
        },
    ),
    "UpstreamError": error(
        "The model server failed: unreachable, an HTTP error, a malformed answer or a dropped connection. The hold "
        "is released; nothing is charged (the charge headers say 0).",
        {
            "upstream_error": error_example(
                "The model server answered HTTP 503; nothing was charged.", "api_error", "upstream_error"
            )
        },
        header_refs("x-request-id", *CHARGE_HEADERS),
    ),
    "UpstreamTimeout": error(
        "The model server did not answer (or send the next chunk) within its timeout. Nothing is charged.",
        {
            "upstream_timeout": error_example(
                "The model server did not answer in time; nothing was charged.",
                "api_error",
                "upstream_timeout",
            )
        },
        header_refs("x-request-id", *CHARGE_HEADERS),
    ),
}


def errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        402: "PaymentRequired",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "RequestTooLarge",
        429: "RateLimited",
        500: "ServerError",
        502: "UpstreamError",
        504: "UpstreamTimeout",
    }
    return {str(status): {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}
