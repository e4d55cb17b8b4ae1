"""Chat completions through the gateway with the official openai SDK: plain and streamed, metered exactly."""

import pytest
from django.db.models import Sum

from billing.pricing import rating
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import MODEL, balances, reconciled, records, usd, wait_for

pytestmark = pytest.mark.usefixtures("standin")

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello ten times."},
]
# llama-3.1-8b-instruct list prices: 180_000 micro-USD per 1M tokens for input and output.
PRICE = 180_000


def cost(input_tokens: int, output_tokens: int) -> int:
    return rating.line_cost_nano(input_tokens, PRICE) + rating.line_cost_nano(output_tokens, PRICE)


def test_a_completion_is_held_forwarded_and_settled_at_the_reported_usage(client, funded, standin):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=50)
    completion = raw.parse()
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert completion.choices[0].message.content == "hello" + " hello" * 9
    assert completion.model == MODEL
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, 10)
    charge = cost(prompt, 10)
    assert raw.headers["x-billing-charge-nano"] == str(charge)
    assert raw.headers["x-billing-balance-remaining-nano"] == str(usd("10") - charge)
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) >= 0
    # The upstream got its own key and model name, and max_tokens the hold covers.
    assert standin.authorizations[-1] == "Bearer sk-upstream-secret"
    assert standin.bodies[-1]["max_tokens"] == 50
    assert balances(funded) == (usd("10") - charge, 0)
    (record,) = records()
    assert (record.status, record.charge_nano, record.input_tokens, record.output_tokens) == ("ok", charge, prompt, 10)
    assert (record.estimated_input_tokens, record.estimated_output_tokens) == (prompt, 10)
    assert record.usage_reported and not record.drift_flagged
    assert record.request_id == raw.headers["x-request-id"]
    assert sum(line["amount_nano"] for line in record.lines) == charge
    assert record.price_version_id == rating_version()
    assert reconciled(funded) == []


def rating_version() -> int:
    from billing.pricing.models import PriceVersion

    return PriceVersion.objects.get(model__slug=MODEL).pk


def test_without_reported_usage_the_gateway_counts_with_tiktoken_and_says_so(client, funded, standin):
    standin.behaviour = "no_usage"
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, 10)
    (record,) = records()
    assert (record.usage_reported, record.charge_nano) == (False, cost(prompt, 10))
    # No max_tokens: the model's default (4096) was held and sent.
    assert standin.bodies[-1]["max_tokens"] == 4096


def test_a_stream_relays_chunks_and_ends_with_the_billed_usage(client, funded, standin):
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=20
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello" + " hello" * 9
    last = chunks[-1]
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt, 10)
    billing = last.model_extra["billing"]
    assert billing["charge_nano"] == cost(prompt, 10)
    assert billing["balance_remaining_nano"] == usd("10") - cost(prompt, 10)
    assert all(c.model == MODEL for c in chunks)
    assert standin.bodies[-1]["stream_options"] == {"include_usage": True}
    (record,) = records()
    assert (record.status, record.charge_nano, record.usage_reported) == ("ok", cost(prompt, 10), True)
    assert balances(funded) == (usd("10") - cost(prompt, 10), 0)


def test_a_stream_without_include_usage_gets_no_usage_chunk_but_is_charged(client, funded, standin):
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=20))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    wait_for(lambda: UsageRecord.objects.exists())
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    assert records()[0].charge_nano == cost(prompt, 10)
    # The server was asked for usage all the same: the charge is the server's figure.
    assert standin.bodies[-1]["stream_options"] == {"include_usage": True}
    assert records()[0].usage_reported


def test_workflow_tags_come_from_the_header_metadata_or_the_key(live_url, client, funded, org_a):
    from accounts.services import apikey_create

    client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"X-Workflow": "nightly-eval"})
    client.chat.completions.create(model=MODEL, messages=MESSAGES, metadata={"workflow": "support-bot"})
    _, labelled = apikey_create(organization_id=org_a.pk, name="labelled", workflow="team-a")
    import openai

    openai.OpenAI(base_url=f"{live_url}/v1", api_key=labelled, max_retries=0).chat.completions.create(
        model=MODEL, messages=MESSAGES
    )
    assert [r.workflow for r in records()] == ["nightly-eval", "support-bot", "team-a"]
    per_workflow = dict(UsageRecord.objects.values_list("workflow").annotate(total=Sum("charge_nano")))
    assert set(per_workflow) == {"nightly-eval", "support-bot", "team-a"}


def test_metadata_workflow_is_not_forwarded_to_the_model_server(client, funded, standin):
    client.chat.completions.create(model=MODEL, messages=MESSAGES, metadata={"workflow": "w1", "run": "7"})
    assert standin.bodies[-1]["metadata"] == {"run": "7"}


def test_an_inflated_prompt_report_is_capped_at_the_hold_and_flagged(client, funded, standin):
    standin.inflate_prompt = 1_000_000
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=10)
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    hold = rating.max_charge_nano(
        prices=rating.Prices(None, PRICE, PRICE, PRICE), prompt_tokens=prompt, max_tokens=10, service_tier="default"
    )
    assert raw.headers["x-billing-charge-nano"] == str(hold)
    (record,) = records()
    assert (record.charge_nano, record.drift_flagged, record.input_tokens) == (hold, True, prompt + 1_000_000)
    assert record.lines[-1]["kind"] == "hold_cap"
    assert sum(line["amount_nano"] for line in record.lines) == hold
    assert reconciled(funded) == []


def test_priority_tier_costs_its_factor_and_n_choices_hold_n_times(client, funded, standin):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=5, service_tier="priority"
    )
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    factor = 17_000
    expected = rating.line_cost_nano(prompt, PRICE, factor) + rating.line_cost_nano(5, PRICE, factor)
    assert raw.headers["x-billing-charge-nano"] == str(expected)
    assert raw.parse().service_tier == "priority"
    assert records()[0].service_tier == "priority"
