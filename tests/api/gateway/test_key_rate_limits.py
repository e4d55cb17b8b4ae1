"""Rate limits set per key: a key's own requests and tokens per minute, inside the organization's."""

import openai
import pytest

from accounts.services import apikey_create, apikey_rotate, apikey_update
from api.gateway import ratelimit
from core.errors import ApplicationError
from tests.api.gateway.conftest import MODEL, Limits

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_a_keys_own_request_limit_refuses_past_it_and_leaves_other_keys_alone(live_url, funded, org_a, standin):
    _, limited = apikey_create(organization_id=org_a.pk, name="slow", requests_per_minute=2)
    _, free = apikey_create(organization_id=org_a.pk, name="free")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=limited, max_retries=0)
    answer = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert answer.headers["x-ratelimit-limit-requests"] == "2"
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert caught.value.code == "rate_limit_exceeded"
    other = openai.OpenAI(base_url=f"{live_url}/v1", api_key=free, max_retries=0)
    for _ in range(3):
        other.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)


def test_a_keys_token_limit_counts_prompt_and_max_tokens(live_url, funded, org_a, standin):
    _, limited = apikey_create(organization_id=org_a.pk, name="tokens", tokens_per_minute=100)
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=limited, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200)
    assert caught.value.code == "request_too_large"  # more than the key's whole minute
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50)


def test_the_organizations_limit_still_applies_to_a_key_with_a_larger_one(settings):
    limits = Limits(requests_per_minute=3)
    limits.key.requests_per_minute = 1000
    draw = limits.draw(10)
    by_key = {bucket.key.split(":")[1]: bucket.capacity for bucket in draw.buckets if bucket.kind == "requests"}
    assert by_key == {"o": 3, "k": 1000}  # both are drawn on: the tighter one decides


def test_the_keys_own_limits_replace_the_operators_defaults(settings):
    settings.GATEWAY_KEY_REQUESTS_PER_MINUTE, settings.GATEWAY_KEY_TOKENS_PER_MINUTE = 60, 6000
    limits = Limits()
    assert {(b.kind, b.capacity) for b in limits.draw(10).buckets if b.key.startswith("rl:k:")} == {
        ("requests", 60),
        ("tokens", 6000),
    }
    limits.key.requests_per_minute, limits.key.tokens_per_minute = 5, 500
    assert {
        (b.kind, b.capacity)
        for b in ratelimit.draw_for(key=limits.key, context=limits.context, tokens=1).buckets
        if b.key.startswith("rl:k:")
    } == {("requests", 5), ("tokens", 500)}


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, -1, True, "10", 1.5, 10**10])
def test_bad_limits_are_refused(org_a, value):
    with pytest.raises(ApplicationError) as caught:
        apikey_create(organization_id=org_a.pk, name="bad", requests_per_minute=value)
    assert caught.value.param == "requests_per_minute"
    key, _ = apikey_create(organization_id=org_a.pk, name="good")
    with pytest.raises(ApplicationError) as caught:
        apikey_update(api_key_id=key.pk, actor=None, tokens_per_minute=value)
    assert caught.value.param == "tokens_per_minute"


@pytest.mark.django_db
def test_limits_are_changed_removed_and_kept_by_rotation(org_a):
    key, _ = apikey_create(organization_id=org_a.pk, name="k", requests_per_minute=10, tokens_per_minute=1000)
    apikey_update(api_key_id=key.pk, actor=None, requests_per_minute=None)
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_minute) == (None, 1000)
    new, _ = apikey_rotate(api_key_id=key.pk, actor=None)
    assert (new.requests_per_minute, new.tokens_per_minute) == (None, 1000)
