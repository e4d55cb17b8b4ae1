"""Every refusal of the metered API, as the openai SDK (and plain HTTP) sees it: OpenAI's error shape, the right
status, a message a developer can act on, and nothing held, charged or recorded."""

import time

import httpx
import openai
import pytest

from accounts.services import apikey_create, apikey_revoke
from api.gateway import ratelimit
from billing.ledger import services as ledger
from billing.metering.models import BudgetSpend, BudgetSpendHold
from billing.pricing import rating
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import MODEL, balances, key_limit, limited_key, usd

pytestmark = pytest.mark.usefixtures("standin")
MESSAGES = [{"role": "user", "content": "Hello there"}]


def assert_nothing_happened(wallet, available: int) -> None:
    assert balances(wallet) == (available, 0)
    assert not UsageRecord.objects.exists()


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


def test_a_bad_or_revoked_key_gets_401(live_url, funded, org_a):
    bad = openai.OpenAI(base_url=f"{live_url}/v1", api_key="sk-tb-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    key, secret = apikey_create(organization_id=org_a.pk, name="doomed")
    apikey_revoke(api_key_id=key.pk, actor=None)
    revoked = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        revoked.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert_nothing_happened(funded, usd("10"))


def test_scopes_limit_endpoints_and_models_with_403(live_url, funded, org_a):
    _, embeddings_only = apikey_create(organization_id=org_a.pk, name="e", scopes={"endpoints": ["embeddings"]})
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=embeddings_only, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "endpoint_not_allowed"
    _, mini_only = apikey_create(organization_id=org_a.pk, name="m", scopes={"models": ["gpt-4o-mini"]})
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=mini_only, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    assert_nothing_happened(funded, usd("10"))


def test_an_unknown_model_is_404_and_a_model_of_another_kind_400(client, funded):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="text-embedding-3-small", messages=MESSAGES)
    assert caught.value.code == "wrong_endpoint_for_model"
    assert_nothing_happened(funded, usd("10"))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": "many"}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 100_000}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 1, "max_completion_tokens": 1}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "n": 99}, "n"),
        ({"model": MODEL, "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": MODEL, "messages": MESSAGES, "service_tier": "gold"}, "service_tier"),
        ({"model": MODEL, "messages": MESSAGES, "metadata": {"workflow": "no spaces please"}}, "metadata.workflow"),
        ({"model": MODEL, "messages": MESSAGES, "metadata": "x"}, "metadata"),
        ({"model": MODEL, "messages": MESSAGES, "tools": "x"}, "tools"),
    ],
)
def test_malformed_parameters_are_400_naming_the_parameter(live_url, secret, funded, body, param):
    response = httpx.post(f"{live_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param
    assert_nothing_happened(funded, usd("10"))


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400(live_url, secret, funded, content):
    response = httpx.post(
        f"{live_url}/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_a_prompt_beyond_the_context_window_is_400(client, funded):
    # The demo model's context window is 8,192 tokens.
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="demo", messages=long)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "word " * 8000}], max_tokens=1000
        )
    assert caught.value.code == "context_length_exceeded"


def test_an_oversized_body_is_413_whether_declared_or_streamed(live_url, secret, funded, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 4096
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]}
    headers = {"Authorization": f"Bearer {secret}"}
    declared = httpx.post(f"{live_url}/v1/chat/completions", json=body, headers=headers)
    assert declared.status_code == 413
    assert error_of(declared)["code"] == "request_too_large"

    def chunks():
        yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    streamed = httpx.post(f"{live_url}/v1/chat/completions", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert_nothing_happened(funded, usd("10"))


def test_not_enough_credit_is_402_naming_the_largest_affordable_max_tokens(client, org_a, wallet):
    # gpt-4o: 2.50 USD per 1M input tokens, 10.00 per 1M output tokens; 0.001 USD of credit.
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("0.001"), idempotency_key="tiny", actor="t"
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=500)
    error = caught.value
    assert (error.status_code, error.code) == (402, "insufficient_credit")
    prompt = chat_prompt_tokens(MESSAGES, "o200k_base")
    prices = rating.Prices(None, 2_500_000, 1_250_000, 10_000_000)
    affordable = (usd("0.001") - rating.line_cost_nano(prompt, 2_500_000)) // 10_000
    assert rating.max_charge_nano(prices=prices, prompt_tokens=prompt, max_tokens=affordable) <= usd("0.001")
    assert rating.max_charge_nano(prices=prices, prompt_tokens=prompt, max_tokens=affordable + 1) > usd("0.001")
    assert f"The largest max_tokens it affords is {affordable}." in error.message
    assert error.response.headers["x-should-retry"] == "false"
    # With that max_tokens, the same request goes through.
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=affordable)
    assert UsageRecord.objects.count() == 1


def test_an_exhausted_key_spend_limit_is_402_too(live_url, funded, org_a):
    limited, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("0.00001"), period="day")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1000)
    assert (caught.value.status_code, caught.value.code) == (402, "key_spend_limit_reached")
    assert "The largest max_tokens it affords is" in caught.value.message
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    spend = BudgetSpend.objects.get(budget=key_limit(limited))
    record = UsageRecord.objects.get()
    assert (spend.spent_nano, spend.held_nano) == (record.charge_nano, 0)
    assert not BudgetSpendHold.objects.exists()


@pytest.mark.parametrize("stream", [False, True])
def test_a_key_with_a_spend_limit_whose_organization_lacks_the_credit_gets_402(live_url, org_a, wallet, stream):
    # The key's limit would allow the call; the wallet (0.001 USD) does not cover gpt-4o's hold for 500 tokens.
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("0.001"), idempotency_key="tiny", actor="t"
    )
    limited, secret = limited_key(organization_id=org_a.pk, amount_nano=usd("5"), period="day")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=500, stream=stream)
    error = caught.value
    assert (error.status_code, error.code) == (402, "insufficient_credit")
    assert "Not enough credit" in error.message and "The largest max_tokens it affords is" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert_nothing_happened(wallet, usd("0.001"))
    # The key's claim went with the refused hold: nothing is held against its limit.
    assert not BudgetSpend.objects.filter(budget=key_limit(limited), held_nano__gt=0).exists()
    assert not BudgetSpendHold.objects.exists()


def test_rate_limits_answer_429_with_retry_after_and_openai_headers(client, funded, settings):
    settings.GATEWAY_ORG_REQUESTS_PER_MINUTE = 2
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(first.headers["x-ratelimit-limit-tokens"]) == settings.GATEWAY_ORG_TOKENS_PER_MINUTE
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    headers = caught.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"} <= set(headers)
    assert caught.value.code == "rate_limit_exceeded"
    assert UsageRecord.objects.count() == 2


def test_a_request_larger_than_the_token_limit_is_refused_for_good(client, funded, settings):
    settings.GATEWAY_ORG_TOKENS_PER_MINUTE = 1000
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2000)
    assert caught.value.code == "request_too_large"
    assert caught.value.response.headers["x-should-retry"] == "false"
    # Within the limit it goes through, and unused tokens are given back after the settle.
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=900)


def test_a_request_refused_for_credit_gives_back_its_rate_limit_tokens(client, org_a, wallet, settings):
    # The 402 request takes most of the minute's 1000 tokens when admitted; refused at the hold, it used none.
    settings.GATEWAY_ORG_TOKENS_PER_MINUTE = 1000
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("0.001"), idempotency_key="tiny", actor="t"
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=900)
    assert (caught.value.status_code, caught.value.code) == (402, "insufficient_credit")
    time.sleep(ratelimit.REFUND_BATCH_SECONDS * 6)  # refunds are given back in batches
    # Were its tokens still taken, the bucket would need most of a minute to afford this one.
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=900)
    assert UsageRecord.objects.count() == 1


def test_a_key_limit_applies_inside_the_organization_limit(live_url, funded, org_a, settings):
    settings.GATEWAY_KEY_REQUESTS_PER_MINUTE = 1
    _, other = apikey_create(organization_id=org_a.pk, name="second")
    _, one = apikey_create(organization_id=org_a.pk, name="first")
    first = openai.OpenAI(base_url=f"{live_url}/v1", api_key=one, max_retries=0)
    first.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    with pytest.raises(openai.RateLimitError):
        first.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    openai.OpenAI(base_url=f"{live_url}/v1", api_key=other, max_retries=0).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=5
    )


def test_unknown_paths_and_methods_answer_in_openai_shape(live_url, secret):
    headers = {"Authorization": f"Bearer {secret}"}
    missing = httpx.post(f"{live_url}/v1/completions/legacy", headers=headers)
    assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_url"
    wrong = httpx.get(f"{live_url}/v1/chat/completions", headers=headers)
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


NESTED = b"[" * 100_000 + b"]" * 100_000
TOO_BIG = 2**63


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # NUL characters: PostgreSQL cannot store them; refused wherever they are, naming where.
        (
            "chat/completions",
            {"model": MODEL, "messages": [{"role": "user", "content": "a\0b"}]},
            "messages[0].content",
        ),
        ("chat/completions", {"model": f"{MODEL}\0", "messages": MESSAGES}, "model"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "user": "u\0"}, "user"),
        ("chat/completions", {"model": MODEL, "messages": [{"role": "user\0", "content": "x"}]}, "messages[0].role"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "metadata": {"k\0": "v"}}, "metadata.k\\u0000"),
        ("embeddings", {"model": "text-embedding-3-small", "input": ["ok", "a\0"]}, "input[1]"),
        ("tokenize", {"model": MODEL, "input": "a\0"}, "input"),
        ("usage/events", {"events": [{"id": "e", "model": "gpt-4o\0", "input_tokens": 1}]}, "events[0].model"),
        # Wrong types and ranges.
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "service_tier": []}, "service_tier"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "service_tier": {}}, "service_tier"),
        ("tokenize", {"model": MODEL, "input": "x", "service_tier": ["flex"]}, "service_tier"),
        ("chat/completions", {"model": "m" * 100_000, "messages": MESSAGES}, "model"),
        ("chat/completions", {"model": ["gpt-4o"], "messages": MESSAGES}, "model"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "n": "2"}, "n"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "n": 1.5}, "n"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
        (
            "chat/completions",
            {"model": MODEL, "messages": MESSAGES, "max_completion_tokens": "9"},
            "max_completion_tokens",
        ),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": 2.5}, "temperature"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": True}, "temperature"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "top_p": -0.1}, "top_p"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "presence_penalty": 3}, "presence_penalty"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "frequency_penalty": []}, "frequency_penalty"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "top_logprobs": 21}, "top_logprobs"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "logprobs": "yes"}, "logprobs"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "user": 7}, "user"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "stop": [1]}, "stop"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        # Integers beyond 64 bits, wherever they are.
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": TOO_BIG}, "max_tokens"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "n": -TOO_BIG - 1}, "n"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "seed": TOO_BIG}, "seed"),
        ("chat/completions", {"model": MODEL, "messages": MESSAGES, "logit_bias": {"1": 10**30}}, "logit_bias.1"),
        ("embeddings", {"model": "text-embedding-3-small", "input": [[1, TOO_BIG]]}, "input[0][1]"),
        (
            "usage/events",
            {"events": [{"id": "e", "model": "gpt-4o", "input_tokens": 10**40}]},
            "events[0].input_tokens",
        ),
    ],
)
def test_hostile_bodies_are_a_400_naming_the_parameter_never_a_500(live_url, secret, funded, path, body, param):
    response = httpx.post(f"{live_url}/v1/{path}", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param
    assert_nothing_happened(funded, usd("10"))


@pytest.mark.parametrize(
    "content",
    [
        NESTED,
        b'{"model": "' + MODEL.encode() + b'", "messages": [], "tools": ' + NESTED + b"}",
        b'{"model": "x", "temperature": NaN}',
        b'{"model": "x", "temperature": Infinity}',
        b'{"model": "x", "temperature": 1e999}',
    ],
)
def test_json_the_gateway_cannot_pass_on_is_a_400(live_url, secret, funded, content):
    response = httpx.post(
        f"{live_url}/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_json"
    assert_nothing_happened(funded, usd("10"))


def _nested_in_a_chat(levels: int) -> bytes:
    """A chat request whose unknown field `x` holds arrays `levels` deep (the body itself is one level more)."""
    start = b'{"model": "' + MODEL.encode() + b'", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]'
    return start + b', "x": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("levels", [64, 600, 900])
def test_a_body_nested_deeper_than_the_gateway_passes_on_is_a_400_not_a_500(live_url, secret, funded, levels):
    # The parser accepts these (json.loads goes deeper); counting and forwarding them would exhaust the stack.
    response = httpx.post(
        f"{live_url}/v1/chat/completions",
        content=_nested_in_a_chat(levels),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert (error_of(response)["code"], "nested more than 64 levels" in error_of(response)["message"]) == (
        "invalid_json",
        True,
    )
    assert_nothing_happened(funded, usd("10"))


def test_a_body_nested_as_deep_as_allowed_is_served(live_url, secret, funded, standin):
    response = httpx.post(
        f"{live_url}/v1/chat/completions",
        content=_nested_in_a_chat(63),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/staff/organizations/"])
def test_a_host_header_the_server_does_not_serve_is_a_400_in_the_error_shape(live_url, secret, funded, path):
    response = httpx.post(
        f"{live_url}{path}",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {secret}", "Host": "billing.attacker.example"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert error_of(response)["type"] == "invalid_request_error"
    assert_nothing_happened(funded, usd("10"))
