"""When the model server or the client misbehaves, every call is still charged correctly:

- a failed upstream (HTTP error, timeout, malformed answer, dropped connection) costs nothing;
- a client that goes away pays for the prompt and what it was sent;
- a server that goes past max_tokens is cut there, and the call costs max_tokens of output.
"""

import asyncio
import json
import socket

import httpx
import openai
import pytest

from billing.ledger.models import Hold
from billing.pricing import rating
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageRecord
from core import background
from tests.api.gateway.conftest import MODEL, _server_loop, balances, reconciled, records, usd, wait_for

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
PROMPT = chat_prompt_tokens(MESSAGES, "cl100k_base")
PRICE = 180_000  # llama-3.1-8b-instruct, input and output


def cost(input_tokens: int, output_tokens: int) -> int:
    return rating.line_cost_nano(input_tokens, PRICE) + rating.line_cost_nano(output_tokens, PRICE)


def assert_free(wallet, status: str) -> None:
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert (record.status, record.charge_nano, record.hold_id is not None) == (status, 0, True)
    # Released, not captured at zero: the journal says the call failed.
    assert Hold.objects.get(pk=record.hold_id).status == "released"
    assert balances(wallet) == (usd("10"), 0)
    assert reconciled(wallet) == []


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_500_is_502_and_costs_nothing(client, funded, standin, stream):
    standin.behaviour = "http500"
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
    assert "sk-upstream-secret" not in caught.value.response.text
    assert_free(funded, "upstream_error")


def test_an_upstream_refusal_is_400_with_its_message_and_costs_nothing(client, funded, standin):
    standin.behaviour = "http400"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert "logit_bias is not supported" in caught.value.message
    assert_free(funded, "upstream_error")


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_timeout_is_504_and_costs_nothing(client, funded, standin, settings, stream):
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    standin.behaviour, standin.delay = "slow", 3
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
    assert (caught.value.status_code, caught.value.code) == (504, "upstream_timeout")
    assert_free(funded, "upstream_timeout")


def test_a_stream_that_stalls_past_the_deadline_ends_in_an_error_and_costs_nothing(client, funded, standin, settings):
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    standin.behaviour = "hold"
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="did not answer in time"):
        list(stream)
    assert_free(funded, "upstream_timeout")


@pytest.mark.parametrize("stream", [False, True])
def test_a_malformed_answer_costs_nothing(client, funded, standin, stream):
    standin.behaviour = "malformed"
    if stream:
        with pytest.raises(openai.APIError, match="malformed"):
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    else:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert caught.value.status_code == 502
    assert_free(funded, "upstream_error")


# A 60,010-token prompt on gpt-4o was charged 0.150025 for an empty stream: the server had answered 200 with a body
# that held no chunk. Whatever such a body is, the call is a 502 before any byte is sent, and costs nothing.
BIG_MESSAGES = [{"role": "user", "content": "hello " * 60_000}]


@pytest.mark.parametrize(
    "behaviour", ["stream_json", "stream_text_plain", "stream_garbage", "stream_empty", "stream_error", "no_choices"]
)
def test_a_stream_answer_with_no_chunk_in_it_is_502_and_costs_nothing(client, funded, standin, behaviour):
    standin.behaviour = behaviour
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=BIG_MESSAGES, stream=True, max_tokens=10)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
    assert "nothing was charged" in caught.value.message
    assert_free(funded, "upstream_error")


def test_an_answer_without_choices_is_502_and_costs_nothing(client, funded, standin):
    standin.behaviour = "no_choices"
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=BIG_MESSAGES, max_tokens=10)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
    assert_free(funded, "upstream_error")


def test_an_embeddings_answer_without_an_embedding_per_input_is_502_and_costs_nothing(client, funded, standin):
    standin.behaviour = "no_choices"
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
    assert_free(funded, "upstream_error")


def test_a_stream_that_ends_before_its_answer_is_complete_costs_nothing(client, funded, standin):
    # Chunks came, then the body ended with no finish_reason (and no [DONE]): the stream broke off.
    standin.behaviour = "truncated"
    chunks = []
    with pytest.raises(openai.APIError, match="ended before the answer was complete"):
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            chunks.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "hello hello hello"
    assert_free(funded, "upstream_error")


def test_a_stream_without_done_but_with_every_choice_finished_is_charged(client, funded, standin):
    """[DONE] is OpenAI's, not every server's: a stream whose choices all finished is complete without it."""
    standin.behaviour = "no_done"
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.completion_tokens == 10
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert (record.status, record.charge_nano) == ("ok", cost(PROMPT, 10))


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_that_drops_the_connection_costs_nothing(client, funded, standin, stream):
    standin.behaviour = "disconnect"
    if stream:
        chunks = []
        with pytest.raises(openai.APIError, match="could not be reached"):
            for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
                chunks.append(chunk)
        assert len(chunks) >= 2  # what came before the drop was relayed, and is not charged
    else:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert caught.value.status_code == 502
    assert_free(funded, "upstream_error")


def test_a_client_that_leaves_mid_stream_pays_for_the_prompt_and_what_it_got(live_url, secret, funded, standin):
    standin.behaviour = "hold"  # the first token, then the server waits
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 100}
    with httpx.stream(
        "POST", f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}
    ) as response:
        assert response.status_code == 200
        seen = ""
        for line in response.iter_lines():
            seen += line
            if '"hello"' in seen:
                break
    # The connection is closed here, mid-stream.
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert record.status == "client_disconnected"
    assert (record.input_tokens, record.output_tokens) == (PROMPT, 1)
    assert record.charge_nano == cost(PROMPT, 1)
    assert balances(funded) == (usd("10") - cost(PROMPT, 1), 0)
    assert reconciled(funded) == []


def test_a_client_that_leaves_before_the_answer_pays_nothing(live_url, secret, funded, standin):
    standin.behaviour, standin.delay = "slow", 2
    body = {"model": MODEL, "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=0.5
        )
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert (record.status, record.charge_nano) == ("client_disconnected", 0)
    assert Hold.objects.get(pk=record.hold_id).status == "released"
    assert balances(funded) == (usd("10"), 0)


def test_a_stream_client_that_leaves_before_the_first_chunk_pays_nothing(live_url, secret, funded, standin):
    # The model server started its answer (200, headers) but sent no chunk yet: neither has the gateway.
    standin.behaviour, standin.delay = "slow_first", 2
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=0.5
        )
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert (record.status, record.charge_nano) == ("client_disconnected", 0)
    assert Hold.objects.get(pk=record.hold_id).status == "released"
    assert balances(funded) == (usd("10"), 0)


def test_a_stream_past_max_tokens_is_cut_and_charged_for_max_tokens(client, funded, standin):
    standin.behaviour = "overproduce"
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, max_tokens=5, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello" + " hello" * 4
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (PROMPT, 5)
    (record,) = records()
    assert (record.status, record.output_tokens, record.charge_nano) == ("cut", 5, cost(PROMPT, 5))
    assert reconciled(funded) == []


def test_an_answer_past_max_tokens_is_cut_to_it(client, funded, standin):
    standin.behaviour = "overproduce"
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert completion.choices[0].message.content == "hello" + " hello" * 3
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4
    (record,) = records()
    assert (record.status, record.output_tokens, record.charge_nano) == ("cut", 4, cost(PROMPT, 4))


def test_an_answer_reported_past_max_tokens_is_charged_and_reported_at_max_tokens(client, funded, standin):
    # The text fits in max_tokens; the server's usage says it produced far more.
    standin.inflate_completion = 100
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    assert completion.choices[0].message.content == "hello" + " hello" * 9
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT, 20)
    (record,) = records()
    assert (record.status, record.output_tokens, record.charge_nano) == ("cut", 20, cost(PROMPT, 20))
    assert reconciled(funded) == []


def test_a_stream_reported_past_max_tokens_is_charged_reported_and_recorded_like_an_answer(client, funded, standin):
    standin.inflate_completion = 100
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello" + " hello" * 9
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (PROMPT, 20)
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert (record.status, record.output_tokens, record.charge_nano) == ("cut", 20, cost(PROMPT, 20))
    assert reconciled(funded) == []


def test_a_stream_that_keeps_trickling_past_the_call_limit_ends_and_is_charged_for_what_it_delivered(
    client, funded, standin, settings
):
    # Every chunk comes well within the idle read timeout, but the whole stream would take ten seconds.
    settings.UPSTREAM_TIMEOUT_SECONDS = 1
    settings.GATEWAY_MAX_CALL_SECONDS = 2
    standin.reply_tokens, standin.chunk_pause = 40, 0.25
    delivered = ""
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=100)
    with pytest.raises(openai.APIError, match="time limit"):
        for chunk in stream:
            if chunk.choices:
                delivered += chunk.choices[0].delta.content or ""
    got = len(delivered.split())  # "hello hello ...": one token a word
    assert 2 <= got < 40
    wait_for(lambda: UsageRecord.objects.exists())
    (record,) = records()
    assert record.status == "cut"
    assert (record.input_tokens, record.output_tokens) == (PROMPT, got)
    assert record.charge_nano == cost(PROMPT, got) > 0
    assert balances(funded) == (usd("10") - cost(PROMPT, got), 0)
    assert reconciled(funded) == []
    # The hold outlived the whole call: it lasts the call's limit plus the margin, whatever the read timeout.
    hold = Hold.objects.get(pk=record.hold_id)
    assert hold.status == "captured"
    lifetime = (hold.expires_at - hold.created_at).total_seconds()
    assert lifetime >= settings.GATEWAY_MAX_CALL_SECONDS + settings.GATEWAY_HOLD_MARGIN_SECONDS - 1


def _dechunk(raw: bytes) -> bytes:
    """The body of an HTTP/1.1 chunked transfer."""
    body, rest = b"", raw
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_a_client_too_slow_to_take_the_stream_is_settled_at_the_call_limit_for_what_it_was_sent(
    live_url, secret, funded, standin, settings
):
    # The client takes the answer's headers, then reads nothing: the relay fills the sockets' buffers and waits to
    # send, so it neither reads the server again nor reaches the time limit itself. Its watch settles it, shortly
    # after the limit.
    settings.GATEWAY_MAX_CALL_SECONDS = 2
    # 8,000 chunks of 2 kB each: more than the sockets' buffers on both sides can take.
    standin.reply_tokens, standin.chunk_padding = 8_000, 2_000
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 8_000}).encode()
    host, port = live_url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window stays small
        slow.settimeout(30)
        slow.connect((host, int(port)))
        slow.sendall(request + body)
        received = slow.recv(1024)
        while b"\r\n\r\n" not in received:
            received += slow.recv(1024)
        assert received.startswith(b"HTTP/1.1 200")
        # Settled while the client is still connected and still not reading.
        wait_for(lambda: UsageRecord.objects.exists(), timeout=15)
        (record,) = records()
        assert record.status == "client_disconnected"
        assert 0 < record.output_tokens < 8_000
        # What the relay had taken before it stalled reaches the client once it reads, then the answer ends.
        while more := slow.recv(65536):
            received += more
    head, raw = received.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    delivered = ""
    for line in _dechunk(raw).decode().splitlines():
        if line.startswith("data: {"):
            delivered += "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
    # Charged for exactly what it was sent.
    got = len(delivered.split())  # "hello hello ...": one token a word
    assert (record.input_tokens, record.output_tokens) == (PROMPT, got)
    assert record.charge_nano == cost(PROMPT, got)
    assert Hold.objects.get(pk=record.hold_id).status == "captured"
    _settles_drain()
    assert len(records()) == 1
    assert balances(funded) == (usd("10") - cost(PROMPT, got), 0)
    assert reconciled(funded) == []


def _settles_drain() -> None:
    """Wait for every settle still running on the server (a second settle would show as a second record)."""
    loop = _server_loop()
    assert loop is not None
    asyncio.run_coroutine_threadsafe(background.drain(), loop).result(timeout=30)


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_client_that_leaves_as_the_stream_ends_is_settled_once(live_url, secret, funded, standin, include_usage):
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 100}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    for _ in range(3):
        with httpx.stream(
            "POST", f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if '"finish_reason":"stop"' in line:
                    break  # the last content chunk: leave before the usage chunk and [DONE]
    wait_for(lambda: UsageRecord.objects.count() >= 3)
    _settles_drain()
    found = records()
    assert len(found) == 3 and len({r.request_id for r in found}) == 3
    assert len({r.hold_id for r in found}) == 3 and all(r.hold_id is not None for r in found)
    for record in found:
        assert record.status in ("ok", "client_disconnected")
        assert (record.input_tokens, record.output_tokens) == (PROMPT, 10)
        assert record.charge_nano == cost(PROMPT, 10)
    assert balances(funded) == (usd("10") - 3 * cost(PROMPT, 10), 0)
    assert reconciled(funded) == []
