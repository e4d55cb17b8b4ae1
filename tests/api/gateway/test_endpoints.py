"""Embeddings, models, tokenize and the built-in demo model, through the official openai SDK."""

import base64
import json
import os
from asyncio import events as asyncio_events

import httpx
import openai
import pytest

from api.gateway import calls, chat, embeddings
from billing.ledger.models import Hold
from billing.pricing import rating
from billing.tokens import chat_prompt_tokens, text_tokens
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import balances, reconciled, records, usd, wait_for

# OpenAI's published example ("How to count tokens with tiktoken", openai-cookbook): 129 prompt tokens for
# gpt-3.5-turbo / gpt-4 (cl100k_base), 124 for gpt-4o / gpt-4o-mini (o200k_base); with the weather tool
# definition below, 105 (cl100k_base) and 101 (o200k_base).
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": (
            "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."
        ),
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": (
            "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."
        ),
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def tokenize(live_url: str, secret: str, body: dict) -> dict:
    response = httpx.post(f"{live_url}/v1/tokenize", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("model", "encoding", "expected", "expected_with_tools"),
    [("llama-3.1-8b-instruct", "cl100k_base", 129, 105), ("gpt-4o", "o200k_base", 124, 101)],
)
def test_prompt_tokens_equal_openais_published_counts(
    live_url, secret, funded, model, encoding, expected, expected_with_tools
):
    counted = tokenize(live_url, secret, {"model": model, "messages": COOKBOOK_MESSAGES})
    assert (counted["encoding"], counted["prompt_tokens"]) == (encoding, expected)
    with_tools = tokenize(
        live_url, secret, {"model": model, "messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    )
    assert with_tools["prompt_tokens"] == expected_with_tools
    assert not UsageRecord.objects.exists()  # counting is free
    assert balances(funded) == (usd("10"), 0)


def test_the_hold_of_a_chat_call_is_sized_from_the_published_count(client, funded, standin):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=COOKBOOK_MESSAGES, max_tokens=7, stream=True
    )
    list(raw.parse())
    prices = rating.Prices(None, 2_500_000, 1_250_000, 10_000_000)
    assert raw.headers["x-billing-hold-nano"] == str(
        rating.max_charge_nano(prices=prices, prompt_tokens=124, max_tokens=7)
    )
    wait_for(lambda: UsageRecord.objects.exists())
    assert records()[0].estimated_input_tokens == 124


def test_tokenize_counts_text_inputs_and_states_the_most_a_call_costs(live_url, secret, funded):
    counted = tokenize(live_url, secret, {"model": "text-embedding-3-small", "input": ["hello world", "tiktoken"]})
    assert counted["counts"] == [text_tokens("hello world", "cl100k_base"), text_tokens("tiktoken", "cl100k_base")]
    assert counted["prompt_tokens"] == sum(counted["counts"])
    # The hold has the embeddings call's margin over the count.
    assert counted["held_prompt_tokens"] == embeddings.held_tokens(counted["counts"]) > counted["prompt_tokens"]
    assert counted["max_charge_nano"] == rating.line_cost_nano(counted["held_prompt_tokens"], 20_000)
    response = httpx.post(
        f"{live_url}/v1/tokenize", json={"model": "gpt-4o"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 400


def test_tokenize_counts_a_large_prompt_off_the_event_loop_as_chat_does(live_url, secret, funded, monkeypatch):
    seen: list[bool] = []
    count = chat.prompt_tokens

    def spied(*args, **kwargs):
        seen.append(asyncio_events._get_running_loop() is not None)
        return count(*args, **kwargs)

    monkeypatch.setattr(chat, "prompt_tokens", spied)
    messages = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 4_000}]  # about 108 kB
    assert len(json.dumps(messages)) > calls.COUNT_OFF_LOOP_BYTES
    counted = tokenize(live_url, secret, {"model": "llama-3.1-8b-instruct", "messages": messages, "max_tokens": 5})
    assert seen == [False]  # counted once, on a thread with no event loop
    assert counted["prompt_tokens"] == counted["held_prompt_tokens"] == chat_prompt_tokens(messages, "cl100k_base")


def test_embeddings_are_metered_on_the_input_tokens(client, funded, standin):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one two", "three"])
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    used = text_tokens("one two", "cl100k_base") + text_tokens("three", "cl100k_base")
    assert result.usage.prompt_tokens == used
    assert raw.headers["x-billing-charge-nano"] == str(rating.line_cost_nano(used, 20_000))
    (record,) = records()
    assert (record.endpoint, record.input_tokens, record.output_tokens) == ("embeddings", used, 0)
    assert (record.usage_reported, record.drift_flagged) == (True, False)  # no completion count is needed
    assert reconciled(funded) == []


def test_embeddings_refuse_bad_input_and_chat_models(client, funded):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input=[])
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="gpt-4o", input="hi")
    assert caught.value.code == "wrong_endpoint_for_model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="word " * 9000)
    assert caught.value.code == "context_length_exceeded"
    assert not UsageRecord.objects.exists()


def test_models_lists_the_catalogue_with_prices(client, funded):
    models = {m.id: m for m in client.models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "demo"} <= set(models)
    pricing = models["gpt-4o"].model_extra["pricing"]
    assert (pricing["input"], pricing["cached_input"], pricing["output"]) == ("2.50", "1.25", "10.00")
    assert pricing["output_micro_per_mtok"] == 10_000_000 and pricing["currency"] == "USD"
    assert models["gpt-4o"].model_extra["context_window"] == 128_000
    one = client.models.retrieve("gpt-4o-mini")
    assert one.id == "gpt-4o-mini" and one.model_extra["pricing"]["input"] == "0.15"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_with_no_upstream_configured_the_demo_model_answers_offline(client, funded, settings):
    settings.UPSTREAM_BASE_URL = ""
    completion = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi there"}])
    text = completion.choices[0].message.content
    assert text.startswith("Hello! This is the demo model") and "Hi there" in text
    again = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi there"}])
    assert again.choices[0].message.content == text  # deterministic
    assert completion.usage.completion_tokens == text_tokens(text, "cl100k_base")
    chunks = list(
        client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "Hi there"}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=8,
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(streamed) and chunks[-1].usage.completion_tokens == 8
    vectors = client.embeddings.create(model="text-embedding-3-small", input="offline")
    assert len(vectors.data[0].embedding) == 256
    wait_for(lambda: UsageRecord.objects.count() == 4)
    assert all(r.usage_reported and r.charge_nano > 0 for r in records())
    assert reconciled(funded) == []


def _held(client, **request) -> int:
    """The hold of one streamed gpt-4o call (max_tokens=7), from its x-billing-hold-nano header."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=request.pop("messages", COOKBOOK_MESSAGES), max_tokens=7, stream=True, **request
    )
    list(raw.parse())
    return int(raw.headers["x-billing-hold-nano"])


GPT_4O_INPUT = 2_500_000  # micro-USD per 1M input tokens

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "report",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                f"field_{i}": {
                    "type": "object",
                    "description": f"The {i}th section of the report, with its title and a summary of it.",
                    "properties": {"title": {"type": "string"}, "summary": {"type": "string"}},
                    "required": ["title", "summary"],
                }
                for i in range(40)
            },
            "required": [f"field_{i}" for i in range(40)],
        },
    },
}


def test_the_hold_covers_a_response_format_schema_nested_tools_images_and_unknown_fields(client, funded, standin):
    """Everything a model server renders into the prompt is held for: the hold is never below what it bills."""
    base = _held(client)
    schema_tokens = text_tokens(json.dumps(SCHEMA, separators=(",", ":"), sort_keys=True), "o200k_base")
    assert schema_tokens > 1_000
    assert _held(client, response_format=SCHEMA) - base >= rating.line_cost_nano(schema_tokens, GPT_4O_INPUT)
    # Tool parameters nested below the first level, which OpenAI's published accounting leaves out.
    nested = SCHEMA["json_schema"]["schema"]
    tools = [{"type": "function", "function": {"name": "file", "description": "File a report.", "parameters": nested}}]
    assert _held(client, tools=tools) - base >= rating.line_cost_nano(schema_tokens * 9 // 10, GPT_4O_INPUT)
    # An image behind a short URL is held for what a high-detail image can cost, not for the URL's few tokens.
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = [*COOKBOOK_MESSAGES, {"role": "user", "content": [{"type": "text", "text": "And this?"}, image]}]
    text_only = [*COOKBOOK_MESSAGES, {"role": "user", "content": [{"type": "text", "text": "And this?"}]}]
    assert _held(client, messages=with_image) - _held(client, messages=text_only) >= rating.line_cost_nano(
        1_445, GPT_4O_INPUT
    )
    # A field the gateway does not know is forwarded, so it is held for too.
    extra = {"prediction": {"type": "content", "content": "lorem ipsum " * 200}}
    assert _held(client, extra_body=extra) - base >= rating.line_cost_nano(400, GPT_4O_INPUT)
    wait_for(lambda: UsageRecord.objects.count() == 6)
    assert balances(funded)[1] == 0


def test_an_inline_image_is_held_as_an_image_not_as_the_text_of_its_base64(client, funded, standin):
    """A base64 image of 600 kB would be hundreds of thousands of tokens as text, beyond gpt-4o's context window:
    it is held at what an image can cost, exactly as the same image behind a URL."""
    inline = "data:image/png;base64," + base64.b64encode(os.urandom(600_000)).decode()
    assert text_tokens(inline, "o200k_base") > 128_000

    def asking(url: str) -> list[dict]:
        image = {"type": "image_url", "image_url": {"url": url}}
        return [*COOKBOOK_MESSAGES, {"role": "user", "content": [{"type": "text", "text": "And this?"}, image]}]

    assert _held(client, messages=asking(inline)) == _held(client, messages=asking("https://example.com/a.png"))
    wait_for(lambda: UsageRecord.objects.count() == 2)
    assert balances(funded)[1] == 0


def test_the_hold_of_an_embeddings_call_has_a_margin_over_the_count(client, funded, standin):
    inputs = ["one two three four five six seven eight nine ten", "eleven", [100, 200, 300]]
    client.embeddings.create(model="text-embedding-3-small", input=inputs)
    (record,) = records()
    counted = text_tokens(inputs[0], "cl100k_base") + text_tokens(inputs[1], "cl100k_base") + 3
    assert record.input_tokens == counted
    hold = Hold.objects.get(pk=record.hold_id)
    # At least a tenth more than counted, and some tokens per input on top.
    assert hold.amount_nano >= rating.line_cost_nano(counted + counted // 10 + 3 * 4, 20_000)
    assert record.charge_nano == rating.line_cost_nano(counted, 20_000) < hold.amount_nano
    assert reconciled(funded) == []


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"max_tokens": 7},
        {"max_completion_tokens": 300},
        {"n": 3},
        {"n": 2, "max_tokens": 50, "service_tier": "priority"},
        {"service_tier": "flex", "tools": TOOLS},
        {"max_tokens": 9, "stream_options": {"include_usage": True}},
        {"response_format": SCHEMA, "prediction": {"type": "content", "content": "lorem ipsum " * 20}},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://a.b/c.png"}}]}]},
    ],
)
def test_tokenize_predicts_the_hold_of_the_chat_call_exactly(live_url, secret, funded, standin, extra):
    # Streamed, the call states its hold in a header.
    body = {"model": "gpt-4o", "messages": COOKBOOK_MESSAGES, "stream": True, **extra}
    counted = tokenize(live_url, secret, body)
    response = httpx.post(
        f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert counted["max_charge_nano"] == int(response.headers["x-billing-hold-nano"])
    assert counted["n"] == extra.get("n", 1)
    wait_for(lambda: UsageRecord.objects.exists())
    assert counted["held_prompt_tokens"] == records()[0].estimated_input_tokens


@pytest.mark.parametrize(
    ("extra", "param"), [({"max_tokens": 16_385}, "max_tokens"), ({"n": 9}, "n"), ({"max_tokens": 0}, "max_tokens")]
)
def test_tokenize_refuses_the_max_tokens_and_n_chat_refuses(live_url, secret, funded, standin, extra, param):
    body = {"model": "gpt-4o", "messages": COOKBOOK_MESSAGES, **extra}
    headers = {"Authorization": f"Bearer {secret}"}
    counted = httpx.post(f"{live_url}/v1/tokenize", json=body, headers=headers)
    called = httpx.post(f"{live_url}/v1/chat/completions", json=body, headers=headers)
    assert (counted.status_code, called.status_code) == (400, 400)
    assert counted.json()["error"]["param"] == called.json()["error"]["param"] == param


def test_tokenize_says_a_prompt_filling_the_context_window_does_not_fit(live_url, secret, funded):
    from billing.pricing.models import AIModel

    # The cookbook prompt is 124 tokens: it fills the window and leaves no room for a completion.
    AIModel.objects.filter(slug="gpt-4o").update(context_window=124, max_output_tokens=100, default_max_tokens=100)
    from api.gateway.cache import caches_clear

    caches_clear()
    counted = tokenize(live_url, secret, {"model": "gpt-4o", "messages": COOKBOOK_MESSAGES})
    assert (counted["prompt_tokens"], counted["fits_context"]) == (124, False)


def test_tokenize_predicts_the_hold_of_the_embeddings_call_exactly(live_url, secret, funded, standin):
    body = {"model": "text-embedding-3-small", "input": ["one two three", "four"]}
    counted = tokenize(live_url, secret, body)
    response = httpx.post(f"{live_url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.text
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert counted["max_charge_nano"] == Hold.objects.get(pk=record.hold_id).amount_nano
