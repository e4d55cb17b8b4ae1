"""Reasoning and cached tokens as the model server reports them, through the gateway with the official openai SDK:
read from the usage of answers and of streams (the final usage chunk), billed at the version's reasoning price,
stored on the usage record, and returned to the client in OpenAI's usage details."""

import pytest

from billing.pricing import rating
from billing.pricing.models import PriceVersion
from billing.tokens import chat_prompt_tokens
from tests.api.gateway.conftest import MODEL, balances, reconciled, records, usd

pytestmark = pytest.mark.usefixtures("standin")

MESSAGES = [{"role": "user", "content": "Think hard, then say hello."}]
PRICE = 180_000  # llama-3.1-8b-instruct: input, cached input and output
REASONING_PRICE = 720_000


@pytest.fixture
def reasoning_priced(priced) -> None:
    # Before any usage points at the version (afterwards it is history and cannot change).
    PriceVersion.objects.filter(model__slug=MODEL).update(reasoning_price_micro_per_mtok=REASONING_PRICE)


def expected_charge(prompt: int, visible: int, reasoning: int) -> int:
    return (
        rating.line_cost_nano(prompt, PRICE)
        + rating.line_cost_nano(visible, PRICE)
        + rating.line_cost_nano(reasoning, REASONING_PRICE)
    )


def test_an_answer_bills_reported_reasoning_at_the_reasoning_price(client, funded, standin, reasoning_priced):
    standin.reasoning_tokens = 300
    standin.cached_tokens = 4
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=400)
    completion = raw.parse()
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert completion.usage.completion_tokens == 310
    assert completion.usage.completion_tokens_details.reasoning_tokens == 300
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    # 4 cached input tokens cost the same as input for this model: the charge is prompt + 10 output + 300 reasoning.
    charge = expected_charge(prompt, 10, 300)
    assert raw.headers["x-billing-charge-nano"] == str(charge)
    (record,) = records()
    assert (record.output_tokens, record.reasoning_tokens, record.cached_input_tokens) == (310, 300, 4)
    assert record.charge_nano == charge
    # The hidden reasoning is not drift: the 10 delivered tokens are what tiktoken counted.
    assert record.usage_reported and not record.drift_flagged
    kinds = {line["kind"]: line["tokens"] for line in record.lines}
    assert kinds == {"input": prompt - 4, "cached_input": 4, "output": 10, "reasoning": 300}
    assert balances(funded) == (usd("10") - charge, 0)
    assert reconciled(funded) == []


def test_a_stream_bills_the_reasoning_of_its_final_usage_chunk(client, funded, standin, reasoning_priced):
    standin.reasoning_tokens = 50
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=100
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (60, 50)
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    (record,) = records()
    assert (record.output_tokens, record.reasoning_tokens, record.charge_nano) == (
        60,
        50,
        expected_charge(prompt, 10, 50),
    )
    assert reconciled(funded) == []


def test_without_a_reasoning_price_reasoning_is_billed_as_output(client, funded, standin, priced):
    standin.reasoning_tokens = 30
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    (record,) = records()
    assert record.reasoning_tokens == 30
    assert record.charge_nano == rating.line_cost_nano(prompt, PRICE) + rating.line_cost_nano(10, PRICE) + (
        rating.line_cost_nano(30, PRICE)
    )


def test_the_hold_covers_max_tokens_at_the_reasoning_price(client, funded, standin, reasoning_priced):
    # A reasoning model may spend all of max_tokens thinking: the hold (and so a 402) is sized on the dearer rate.
    standin.behaviour = "hold"
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    expected_hold = rating.line_cost_nano(prompt, PRICE) + rating.line_cost_nano(1_000, REASONING_PRICE)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=1_000)
    next(iter(stream))
    assert balances(funded)[1] == expected_hold
    standin.release()
    list(stream)
    assert balances(funded)[1] == 0
