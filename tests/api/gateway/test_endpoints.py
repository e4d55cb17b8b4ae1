"""Embeddings, models, tokenize and the built-in demo model, through the official openai SDK."""

import httpx
import openai
import pytest

from billing.pricing import rating
from billing.tokens import text_tokens
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
    assert counted["max_charge_nano"] == rating.line_cost_nano(counted["prompt_tokens"], 20_000)
    response = httpx.post(
        f"{live_url}/v1/tokenize", json={"model": "gpt-4o"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 400


def test_embeddings_are_metered_on_the_input_tokens(client, funded, standin):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one two", "three"])
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    used = text_tokens("one two", "cl100k_base") + text_tokens("three", "cl100k_base")
    assert result.usage.prompt_tokens == used
    assert raw.headers["x-billing-charge-nano"] == str(rating.line_cost_nano(used, 20_000))
    (record,) = records()
    assert (record.endpoint, record.input_tokens, record.output_tokens) == ("embeddings", used, 0)
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
