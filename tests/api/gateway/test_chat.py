"""Chat completions through the gateway with the official openai SDK: plain and streamed, metered exactly."""

import json
from asyncio import events as asyncio_events

import httpx
import pytest
from django.db.models import Sum

from api.gateway import calls, chat
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


@pytest.mark.parametrize("without_choices", [False, True])
def test_a_usage_chunk_with_no_choices_is_counted_and_the_client_gets_the_billed_usage(
    client, funded, standin, without_choices
):
    # OpenAI ends a stream with a usage chunk whose choices are []; some servers leave the key out altogether.
    standin.usage_without_choices = without_choices
    standin.inflate_prompt = 3  # the server's figure, not tiktoken's, is what is charged
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=20
        )
    )
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base") + 3
    last = chunks[-1]
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt, 10)
    (record,) = records()
    assert (record.status, record.usage_reported, record.charge_nano) == ("ok", True, cost(prompt, 10))
    assert balances(funded) == (usd("10") - cost(prompt, 10), 0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("omitted", ["completion_tokens", "prompt_tokens"])
def test_a_usage_report_missing_a_figure_is_completed_by_counting_not_charged_as_zero(
    client, funded, standin, stream, omitted
):
    standin.usage_omit = omitted
    standin.inflate_prompt = 3  # so that a reported prompt figure is told apart from tiktoken's count
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    if stream:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=20))
        wait_for(lambda: UsageRecord.objects.exists())
    else:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
        billed_prompt = prompt + 3 if omitted == "completion_tokens" else prompt
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (billed_prompt, 10)
    (record,) = records()
    # The figure the server gave is used; the missing one is tiktoken's count (10 words of output, the prompt).
    billed_prompt = prompt + 3 if omitted == "completion_tokens" else prompt
    assert (record.input_tokens, record.output_tokens) == (billed_prompt, 10)
    assert record.charge_nano == cost(billed_prompt, 10)
    assert (record.usage_reported, record.drift_flagged) == (False, True)
    assert balances(funded) == (usd("10") - cost(billed_prompt, 10), 0)


@pytest.mark.parametrize("declared", [True, False])
def test_a_large_prompt_is_counted_off_the_event_loop_to_the_same_figure(
    live_url, secret, funded, standin, monkeypatch, declared
):
    """A large prompt is counted on a worker thread (the event loop keeps serving other calls meanwhile), whether
    the body declares its length or arrives in chunks, and the count is the same as on the loop."""
    seen: list[bool] = []
    count = chat.prompt_tokens

    def spied(*args, **kwargs):
        seen.append(asyncio_events._get_running_loop() is not None)
        return count(*args, **kwargs)

    monkeypatch.setattr(chat, "prompt_tokens", spied)
    text = "lorem ipsum dolor sit amet " * 4_000  # about 108 kB
    messages = [{"role": "user", "content": text}]
    body = json.dumps({"model": MODEL, "messages": messages, "max_tokens": 5}).encode()
    assert len(body) > calls.COUNT_OFF_LOOP_BYTES
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def chunks():
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    content = body if declared else chunks()
    response = httpx.post(f"{live_url}/v1/chat/completions", content=content, headers=headers, timeout=30)
    assert response.status_code == 200
    assert seen == [False]  # counted once, on a thread with no event loop
    (record,) = records()
    assert record.estimated_input_tokens == chat_prompt_tokens(messages, "cl100k_base")
