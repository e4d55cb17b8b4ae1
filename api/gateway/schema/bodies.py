"""The request and response bodies of the /v1 operations in the OpenAPI schema, with examples."""

from typing import Any

from accounts.services.apikeys import WORKFLOW_RE
from api.gateway import params
from api.gateway.schema.responses import amount, nano, ref
from billing.metering import events

TIERS = list(params.SERVICE_TIERS)
USAGE = {
    "type": "object",
    "description": "The billed token counts: the model server's report, or tiktoken's counts when it sent none.",
    "properties": {
        "prompt_tokens": {"type": "integer", "example": 12},
        "completion_tokens": {"type": "integer", "example": 9},
        "total_tokens": {"type": "integer", "example": 21},
        "prompt_tokens_details": {
            "type": "object",
            "properties": {"cached_tokens": {"type": "integer", "example": 0}},
        },
    },
}
BILLING = {
    "type": "object",
    "description": "In the last chunk of a stream with `include_usage`: what the call cost and the credit left.",
    "properties": {
        "request_id": {"type": "string", "example": "req_5b1c2f0e9a7d4c3b"},
        "charge": amount("What the call cost", "0.0000072"),
        "charge_nano": nano("What the call cost", 7200),
        "currency": {"type": "string", "example": "USD"},
        "balance_remaining": amount("Available credit after the call", "19.9999928"),
        "balance_remaining_nano": nano("Available credit after the call", 19999992800),
    },
}
CHAT_PARAMETERS: dict[str, Any] = {
    "model": {"type": "string", "maxLength": 200, "description": "A model id from `GET /v1/models`."},
    "max_tokens": {
        "type": "integer",
        "minimum": 1,
        "maximum": 10_000_000,
        "description": "The most completion tokens per choice; at most the model's `max_output_tokens`, and the "
        "prompt plus this must fit its `context_window`. Default: the model's `default_max_tokens`, shortened to "
        "what the context window leaves. Credit is held for it.",
    },
    "max_completion_tokens": {
        "type": "integer",
        "minimum": 1,
        "maximum": 10_000_000,
        "description": "The newer name of `max_tokens`; send one of the two.",
    },
    "n": {
        "type": "integer",
        "minimum": 1,
        "maximum": params.MAX_CHOICES,
        "default": 1,
        "description": "Choices to generate; credit is held for `max_tokens` for each.",
    },
    "service_tier": {
        "type": "string",
        "enum": TIERS,
        "default": "auto",
        "description": "The price tier charged (`auto` is `default`); the model's factors are in `/v1/models`.",
    },
}
CHAT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "description": "OpenAI's chat completion request. Fields the gateway does not know are passed on to the "
    "model server (and counted into the hold as their JSON).",
    "properties": {
        "model": CHAT_PARAMETERS["model"],
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": params.MAX_MESSAGES,
            "items": ref("ChatMessage"),
        },
        "max_tokens": CHAT_PARAMETERS["max_tokens"],
        "max_completion_tokens": CHAT_PARAMETERS["max_completion_tokens"],
        "n": CHAT_PARAMETERS["n"],
        "stream": {"type": "boolean", "default": False, "description": "Answer as server-sent events."},
        "stream_options": {
            "type": "object",
            "description": "Only with `stream: true`.",
            "properties": {
                "include_usage": {
                    "type": "boolean",
                    "description": "End the stream with a chunk holding `usage` and `billing`.",
                }
            },
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer", "format": "int64"},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "stop": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "maxItems": params.MAX_STOPS, "items": {"type": "string"}},
            ]
        },
        "user": {"type": "string"},
        "service_tier": CHAT_PARAMETERS["service_tier"],
        "tools": {"type": "array", "items": {"type": "object"}, "description": "OpenAI's tool definitions."},
        "tool_choice": {"description": "OpenAI's tool_choice, passed on."},
        "response_format": {"type": "object", "description": "OpenAI's response_format, passed on."},
        "metadata": {
            "type": "object",
            "description": "`workflow` tags the call for cost attribution (not forwarded to the model server).",
            "properties": {"workflow": ref("Workflow")},
            "additionalProperties": {"type": "string"},
        },
    },
    "example": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 50,
    },
}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "OpenAI's error shape; the SDKs raise it as their typed exceptions.",
        "required": ["error"],
        "properties": {"error": ref("ErrorDetail")},
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string", "description": "What is wrong, for a person."},
            "type": {"type": "string", "example": "invalid_request_error"},
            "param": {"type": "string", "nullable": True, "description": "The field at fault."},
            "code": {"type": "string", "nullable": True, "example": "invalid_value"},
            "details": ref("RefusalDetails"),
        },
    },
    "Money": {
        "type": "object",
        "properties": {
            "amount": {"type": "string", "description": "In the currency's main unit", "example": "0.0012"},
            "amount_nano": {"type": "integer", "description": "In nano-units (1e-9 of the unit)", "example": 1200000},
        },
    },
    "RefusalDetails": {
        "type": "object",
        "description": "Only on a 402: why the call was refused, in a form a program can act on. The official "
        "SDKs expose it as `APIStatusError.body['details']`. To go on: send again with `max_tokens` at most "
        "`affordable_max_tokens` (when it is above 0), wait until `resets_at` (a budget; a key's spend limit is "
        "a hard budget of the key), or add credit at `add_credit_url`.",
        "properties": {
            "reason": {"type": "string", "enum": ["credit", "key_spend_limit", "budget", "postpaid_suspended"]},
            "currency": {"type": "string", "example": "USD"},
            "available": {**ref("Money"), "description": "What the refusing limit has left."},
            "required": {**ref("Money"), "description": "The most the call could cost (its hold)."},
            "prompt_tokens": {"type": "integer"},
            "max_tokens": {"type": "integer", "nullable": True, "description": "As asked (per choice)."},
            "n": {"type": "integer"},
            "affordable_max_tokens": {
                "type": "integer",
                "nullable": True,
                "description": "The largest max_tokens (per choice) whose hold fits in `available` for this prompt; "
                "0 when not even 1 fits; null for embeddings.",
            },
            "prices": {
                "type": "object",
                "description": "The model's prices per million tokens for this prompt (long-context prices past "
                "the threshold), before the service tier's factor (basis points: 10000 is list price).",
                "properties": {
                    "model": {"type": "string"},
                    "unit": {"type": "string", "enum": ["per_million_tokens"]},
                    "input": {"type": "string"},
                    "cached_input": {"type": "string"},
                    "output": {"type": "string"},
                    "request_fee": {"type": "string"},
                    "service_tier": {"type": "string"},
                    "service_tier_factor_bps": {"type": "integer"},
                },
            },
            "resets_at": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "When the refusing budget starts its next period (null for credit).",
            },
            "add_credit_url": {"type": "string", "format": "uri"},
            "budget": {
                "type": "object",
                "description": "reason budget or key_spend_limit: the hard budget that refused.",
                "properties": {
                    "id": {"type": "integer"},
                    "scope": {"type": "string", "enum": ["organization", "workflow", "api_key"]},
                    "workflow": {"type": "string", "nullable": True},
                    "api_key_id": {"type": "integer", "nullable": True},
                    "period": {"type": "string", "enum": ["day", "week", "month"]},
                    "mode": {"type": "string", "enum": ["hard"]},
                    "amount": ref("Money"),
                    "used": {**ref("Money"), "description": "Spent plus held by calls in flight this period."},
                    "resets_at": {"type": "string", "format": "date-time"},
                },
            },
            "key_spend_limit": {
                "type": "object",
                "description": "reason key_spend_limit: the key's spend limit (the key's hard budget, also in "
                "`budget`).",
                "properties": {
                    "api_key_id": {"type": "integer"},
                    "period": {"type": "string", "enum": ["day", "week", "month"]},
                    "limit": ref("Money"),
                    "used": ref("Money"),
                },
            },
            "unpaid_invoice": {
                "type": "object",
                "description": "reason postpaid_suspended: the invoice whose payment lifts the suspension.",
                "properties": {
                    "number": {"type": "string"},
                    "amount": {"type": "string"},
                    "amount_nano": {"type": "integer"},
                },
            },
        },
    },
    "BudgetList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": ref("Budget")},
        },
    },
    "Budget": {
        "type": "object",
        "description": "A budget and its current period (UTC calendar day, week from Monday, or month).",
        "properties": {
            "object": {"type": "string", "enum": ["budget"]},
            "id": {"type": "integer"},
            "scope": {"type": "string", "enum": ["organization", "workflow", "api_key"]},
            "workflow": {"type": "string", "nullable": True},
            "api_key_id": {"type": "integer", "nullable": True},
            "api_key": {
                "type": "object",
                "nullable": True,
                "description": "An API key budget's key. `key_id` is its public id (as in /v1/organization/usage "
                "and the start of its secret): a program finds its own key's budget by it.",
                "properties": {"id": {"type": "integer"}, "key_id": {"type": "string"}, "name": {"type": "string"}},
            },
            "period": {"type": "string", "enum": ["day", "week", "month"]},
            "mode": {"type": "string", "enum": ["alert", "hard"]},
            "thresholds": {"type": "array", "items": {"type": "integer"}},
            "currency": {"type": "string"},
            "amount": {"type": "string"},
            "amount_nano": {"type": "integer"},
            "current_period": {
                "type": "object",
                "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "resets_at": {"type": "string", "format": "date-time"},
                    "spent": {"type": "string"},
                    "spent_nano": {"type": "integer"},
                    "held": {"type": "string"},
                    "held_nano": {"type": "integer"},
                    "left": {"type": "string"},
                    "left_nano": {"type": "integer"},
                    "percent_spent": {"type": "integer"},
                },
            },
        },
    },
    "Workflow": {
        "type": "string",
        "pattern": WORKFLOW_RE.pattern,
        "maxLength": 100,
        "description": "A workflow or project name the usage is attributed to (also the `X-Workflow` header).",
        "example": "nightly-eval",
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {
                "type": "string",
                "example": "user",
                "description": "system, developer, user, assistant, tool",
            },
            "content": {
                "nullable": True,
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
                "description": "Text, or an array of content parts (text, image_url).",
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
        },
    },
    "ChatCompletionRequest": CHAT_REQUEST,
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "example": "chatcmpl-9f2c"},
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer", "example": 1732400000},
            "model": {"type": "string", "example": "gpt-4o-mini"},
            "service_tier": {"type": "string", "description": "The tier charged.", "example": "default"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": ref("ChatMessage"),
                        "finish_reason": {"type": "string", "example": "stop"},
                    },
                },
            },
            "usage": USAGE,
        },
        "example": {
            "id": "chatcmpl-9f2c",
            "object": "chat.completion",
            "created": 1732400000,
            "model": "gpt-4o-mini",
            "service_tier": "default",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    },
    "ChatCompletionChunk": {
        "type": "object",
        "description": "One `data:` event of a stream; the stream ends with `data: [DONE]`.",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["chat.completion.chunk"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": USAGE,
            "billing": BILLING,
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": CHAT_PARAMETERS["model"],
            "input": {
                "description": "A string, an array of strings, a token array, or an array of token arrays (up to "
                f"{params.MAX_EMBEDDING_INPUTS} inputs, each within the model's context window).",
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": params.MAX_EMBEDDING_INPUTS,
                        "items": {"type": "string", "minLength": 1},
                    },
                    ref("TokenIds"),
                    {"type": "array", "minItems": 1, "items": ref("TokenIds")},
                ],
            },
            "dimensions": {"type": "integer", "minimum": 1, "maximum": 65_536},
            "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"},
            "user": {"type": "string"},
            "metadata": CHAT_REQUEST["properties"]["metadata"],
        },
        "example": {"model": "text-embedding-3-small", "input": ["first text", "second text"]},
    },
    "TokenIds": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "integer", "minimum": 0, "maximum": 999_999},
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "enum": ["embedding"]},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}],
                            "description": "Numbers, or base64 with `encoding_format: base64`.",
                        },
                    },
                },
            },
            "usage": {
                "type": "object",
                "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}},
            },
        },
        "example": {
            "object": "list",
            "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        },
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "example": "gpt-4o"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["chat", "embedding"]},
            "encoding": {"type": "string", "example": "o200k_base"},
            "context_window": {"type": "integer"},
            "default_max_tokens": {"type": "integer"},
            "max_output_tokens": {"type": "integer"},
            "status": {"type": "string", "example": "active"},
            "sunset_at": {"type": "string", "format": "date-time", "nullable": True},
            "pricing": {
                "type": "object",
                "description": "The caller's prices (list prices, or the organization's override) per million "
                "tokens, as decimal strings with the exact integers beside them.",
                "properties": {
                    "currency": {"type": "string"},
                    "per": {"type": "string", "enum": ["1M tokens"]},
                    "input": {"type": "string"},
                    "cached_input": {"type": "string"},
                    "output": {"type": "string"},
                    "request_fee": {"type": "string"},
                    "input_micro_per_mtok": {"type": "integer"},
                    "cached_input_micro_per_mtok": {"type": "integer"},
                    "output_micro_per_mtok": {"type": "integer"},
                    "request_fee_nano": {"type": "integer"},
                    "service_tier_factors_bps": {
                        "type": "object",
                        "description": "Price factor per tier, in basis points (10000 = 1x).",
                        "additionalProperties": {"type": "integer"},
                    },
                    "price_version_id": {"type": "integer"},
                },
            },
        },
        "example": {
            "id": "gpt-4o",
            "object": "model",
            "created": 1704067200,
            "owned_by": "OpenAI",
            "name": "GPT-4o",
            "kind": "chat",
            "encoding": "o200k_base",
            "context_window": 128000,
            "default_max_tokens": 4096,
            "max_output_tokens": 16384,
            "status": "active",
            "sunset_at": None,
            "pricing": {
                "currency": "USD",
                "per": "1M tokens",
                "input": "2.50",
                "cached_input": "1.25",
                "output": "10.00",
                "request_fee": "0.00",
                "input_micro_per_mtok": 2500000,
                "cached_input_micro_per_mtok": 1250000,
                "output_micro_per_mtok": 10000000,
                "request_fee_nano": 0,
                "service_tier_factors_bps": {"default": 10000, "priority": 17000, "flex": 5000},
                "price_version_id": 1,
            },
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": ref("Model")},
        },
    },
    "TokenizeRequest": {
        "type": "object",
        "required": ["model"],
        "description": "`messages` (and `tools`) as for chat, or `input` as for embeddings; with `messages`, the "
        "chat parameters that size the hold (`max_tokens`, `n`, `service_tier`) are read and checked as chat "
        "checks them.",
        "properties": {
            "model": CHAT_PARAMETERS["model"],
            "messages": CHAT_REQUEST["properties"]["messages"],
            "tools": CHAT_REQUEST["properties"]["tools"],
            "input": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                ]
            },
            "max_tokens": CHAT_PARAMETERS["max_tokens"],
            "max_completion_tokens": CHAT_PARAMETERS["max_completion_tokens"],
            "n": CHAT_PARAMETERS["n"],
            "service_tier": CHAT_PARAMETERS["service_tier"],
        },
        "example": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 100},
    },
    "Tokenized": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["tokenize"]},
            "model": {"type": "string"},
            "encoding": {"type": "string"},
            "n": {"type": "integer", "description": "With `messages`."},
            "counts": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "With `input`: tokens per input.",
            },
            "prompt_tokens": {"type": "integer", "description": "OpenAI's published count."},
            "held_prompt_tokens": {"type": "integer", "description": "What the hold covers, never less."},
            "context_window": {"type": "integer"},
            "max_output_tokens": {"type": "integer"},
            "max_tokens": {"type": "integer"},
            "fits_context": {"type": "boolean"},
            "max_charge": amount("The most the call can cost: its hold", "0.00102"),
            "max_charge_nano": nano("The hold", 1020000),
            "currency": {"type": "string"},
        },
        "example": {
            "object": "tokenize",
            "model": "gpt-4o",
            "encoding": "o200k_base",
            "n": 1,
            "prompt_tokens": 8,
            "held_prompt_tokens": 8,
            "context_window": 128000,
            "max_output_tokens": 16384,
            "max_tokens": 100,
            "fits_context": True,
            "max_charge": "0.00102",
            "max_charge_nano": 1020000,
            "currency": "USD",
        },
    },
    "Balance": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["balance"]},
            "currency": {"type": "string"},
            "available": amount("Credit available to spend", "23.50"),
            "available_nano": nano("Credit available to spend", 23500000000),
            "held": amount("Credit held by calls in flight", "1.50"),
            "held_nano": nano("Credit held by calls in flight", 1500000000),
            "overdraft_limit": amount("How far below zero available may go", "0.00"),
            "overdraft_limit_nano": nano("The overdraft limit", 0),
            "expiring_soon": {
                "type": "object",
                "properties": {
                    "within_days": {"type": "integer"},
                    "amount": {"type": "string"},
                    "amount_nano": {"type": "integer"},
                    "next_expiry_at": {"type": "string", "format": "date-time", "nullable": True},
                },
            },
        },
        "example": {
            "object": "balance",
            "currency": "USD",
            "available": "23.50",
            "available_nano": 23500000000,
            "held": "1.50",
            "held_nano": 1500000000,
            "overdraft_limit": "0.00",
            "overdraft_limit_nano": 0,
            "expiring_soon": {
                "within_days": 30,
                "amount": "5.00",
                "amount_nano": 5000000000,
                "next_expiry_at": "2026-01-31T00:00:00+00:00",
            },
        },
    },
    "UsageEvent": {
        "type": "object",
        "required": ["id", "model", "input_tokens"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": events.EVENT_ID_RE.pattern,
                "description": "Your idempotency key for the event, unique within your organization.",
            },
            "model": {"type": "string", "maxLength": events.MAX_MODEL_ID_LENGTH},
            "input_tokens": {"type": "integer", "minimum": 0, "maximum": events.MAX_TOKENS_PER_EVENT},
            "cached_input_tokens": {
                "type": "integer",
                "minimum": 0,
                "maximum": events.MAX_TOKENS_PER_EVENT,
                "description": "At most `input_tokens`.",
            },
            "output_tokens": {"type": "integer", "minimum": 0, "maximum": events.MAX_TOKENS_PER_EVENT},
            "service_tier": {"type": "string", "enum": list(events.EVENT_TIERS), "default": "default"},
            "workflow": ref("Workflow"),
            "occurred_at": {
                "type": "string",
                "format": "date-time",
                "description": "With a time zone, within the last GATEWAY_USAGE_EVENTS_MAX_AGE_HOURS; default "
                "now. The event is rated at the prices of that time.",
            },
        },
    },
    "UsageEventsRequest": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "minItems": 1, "items": ref("UsageEvent")}},
        "example": {
            "events": [
                {
                    "id": "job-42-step-1",
                    "model": "llama-3.1-70b-instruct",
                    "input_tokens": 1200,
                    "cached_input_tokens": 0,
                    "output_tokens": 350,
                    "service_tier": "batch",
                    "workflow": "nightly-eval",
                    "occurred_at": "2025-01-31T12:00:00Z",
                }
            ]
        },
    },
    "UsageEventsResult": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "recorded": {"type": "integer"},
            "duplicate": {"type": "integer"},
            "rejected": {"type": "integer"},
            "data": {
                "type": "array",
                "description": "A result per event, in order.",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer", "description": "The event's position in the batch."},
                        "id": {"type": "string", "nullable": True},
                        "status": {"type": "string", "enum": ["recorded", "duplicate", "rejected"]},
                        "error": {
                            "nullable": True,
                            "allOf": [ref("ErrorDetail")],
                        },
                        "request_id": {"type": "string"},
                        "charge": {"type": "string"},
                        "charge_nano": {"type": "integer"},
                        "currency": {"type": "string"},
                    },
                },
            },
        },
        "example": {
            "object": "list",
            "recorded": 1,
            "duplicate": 0,
            "rejected": 0,
            "data": [
                {
                    "index": 0,
                    "id": "job-42-step-1",
                    "status": "recorded",
                    "error": None,
                    "request_id": "metering:7:job-42-step-1",
                    "charge": "0.000682",
                    "charge_nano": 682000,
                    "currency": "USD",
                }
            ],
        },
    },
}
