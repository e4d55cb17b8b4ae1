"""Staff map models to model servers (/api/staff/upstreams/), and the gateway routes calls by that map."""

import openai
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from accounts.services import apikey_create
from api.models import Upstream
from billing.ledger import services as ledger
from billing.pricing.services import price_book_seed
from tests.accounts.factories import UserFactory
from tests.api.gateway.conftest import MODEL, usd

URL = "/api/staff/upstreams/"


@pytest.fixture
def staff(db) -> User:
    price_book_seed()
    return UserFactory(username="ops@example.com", is_staff=True)


@pytest.fixture
def api(staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


def test_staff_create_read_change_and_delete_an_upstream_without_ever_seeing_its_key(api):
    created = api.post(
        URL,
        {"model": "gpt-4o", "base_url": "https://models.example.com/v1/", "api_key": "sk-very-secret"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["model"], body["base_url"], body["upstream_model"]) == (
        "gpt-4o",
        "https://models.example.com/v1",
        "gpt-4o",
    )
    assert body["api_key_set"] is True and "api_key" not in body
    upstream_id = body["id"]
    changed = api.patch(f"{URL}{upstream_id}/", {"timeout_seconds": 30, "enabled": False}, format="json")
    assert changed.status_code == 200 and changed.json()["timeout_seconds"] == 30
    listed = api.get(URL)
    assert [u["id"] for u in listed.json()] == [upstream_id]
    assert "sk-very-secret" not in listed.content.decode()
    assert api.get(f"{URL}{upstream_id}/").json()["enabled"] is False
    assert api.delete(f"{URL}{upstream_id}/").status_code == 204
    assert not Upstream.objects.exists()
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["upstream.create", "upstream.update", "upstream.delete"]
    assert "sk-very-secret" not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "base_url": "ftp://x"},
        {"model": "gpt-4o", "base_url": "not a url"},
        {"model": "gpt-4o", "base_url": "https://user:pw@host/v1"},
        {"model": "gpt-4o", "base_url": "https://host/v1", "timeout_seconds": 0},
        {"model": "gpt-4o", "base_url": "https://host/v1", "timeout_seconds": "soon"},
        {"model": "gpt-4o", "base_url": "https://host/v1", "upstream_model": ""},
        {"model": "gpt-4o", "base_url": "https://host/v1", "api_key": "line\nbreak"},
        {"model": "gpt-4o"},
        {"base_url": "https://host/v1"},
        {"model": "no-such-model", "base_url": "https://host/v1"},
    ],
)
def test_bad_input_is_4xx_and_writes_nothing(api, body):
    response = api.post(URL, body, format="json")
    assert 400 <= response.status_code < 500, response.content
    assert "error" in response.json()
    assert not Upstream.objects.exists()


def test_one_upstream_per_model_unknown_ids_404_and_staff_only(api, staff):
    assert api.post(URL, {"model": "gpt-4o", "base_url": "https://a/v1"}, format="json").status_code == 201
    assert api.post(URL, {"model": "gpt-4o", "base_url": "https://b/v1"}, format="json").status_code == 409
    assert api.get(f"{URL}999999/").status_code == 404
    for unknown in ("\u00b2", "\u0663", "9" * 30):  # a superscript, an Arabic-Indic digit, beyond 64 bits
        assert api.get(f"{URL}{unknown}/").status_code == 404
    assert api.patch(f"{URL}999999/", {"enabled": False}, format="json").status_code == 404
    member = APIClient()
    member.force_authenticate(UserFactory(username="dev@example.com"))
    assert member.get(URL).status_code == 403
    assert APIClient().get(URL).status_code in (401, 403)


def test_upstreams_are_in_the_openapi_schema(api):
    schema = api.get("/api/staff/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/staff/upstreams/" in schema["paths"]
    assert "/api/staff/upstreams/{id}/" in schema["paths"]


def test_calls_go_to_the_models_upstream_with_its_key_and_model_name(client, funded, standin):
    upstream = Upstream.objects.create(
        model_id=_model_id("gpt-4o-mini"),
        base_url=f"{standin.url}/v1",
        api_key="sk-mini-only",
        upstream_model="standin-mini",
    )
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "gpt-4o-mini"
    assert (standin.bodies[-1]["model"], standin.authorizations[-1]) == ("standin-mini", "Bearer sk-mini-only")
    # A disabled upstream gives way to the default upstream.
    upstream.enabled = False
    upstream.save()
    from api.gateway.cache import caches_clear

    caches_clear()
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert (standin.bodies[-1]["model"], standin.authorizations[-1]) == ("gpt-4o-mini", "Bearer sk-upstream-secret")


def test_cookies_a_model_server_sets_are_neither_kept_nor_passed_on(live_url, client, funded, org_b, standin):
    """The gateway's pooled client serves every organization: a cookie one answer sets must not ride along with
    another organization's call, nor reach the caller."""
    # By name: aiohttp's default cookie jar keeps no cookies of servers addressed by IP.
    Upstream.objects.create(
        model_id=_model_id(MODEL), base_url=standin.url.replace("127.0.0.1", "localhost") + "/v1", upstream_model=MODEL
    )
    standin.set_cookie = b"session=first-caller; Path=/"
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "set-cookie" not in raw.headers
    ledger.grant_create(organization_id=org_b.pk, kind="paid", amount_nano=usd("1"), idempotency_key="b", actor="t")
    other = openai.OpenAI(base_url=f"{live_url}/v1", api_key=apikey_create(organization_id=org_b.pk, name="b")[1])
    other.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert standin.cookies[-2:] == ["", ""]


def _model_id(slug: str) -> int:
    from billing.pricing.models import AIModel

    return AIModel.objects.get(slug=slug).pk


def test_service_tier_reaches_only_a_model_server_that_honours_it(client, funded, standin, settings, api):
    from api.gateway.cache import caches_clear

    messages = [{"role": "user", "content": "hi"}]
    # The default upstream (a vLLM-like server): the tier is priced, not forwarded.
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, service_tier="priority")
    assert reply.service_tier == "priority"
    assert "service_tier" not in standin.bodies[-1]
    # A default upstream configured as honouring it gets the client's own value.
    settings.UPSTREAM_FORWARDS_SERVICE_TIER = True
    caches_clear()
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, service_tier="flex")
    assert standin.bodies[-1]["service_tier"] == "flex"
    # Embeddings have no tiers: priced at the default, and the field is never forwarded.
    client.embeddings.create(model="text-embedding-3-small", input="hi", extra_body={"service_tier": "priority"})
    assert "service_tier" not in standin.bodies[-1]
    # A staff-configured upstream: off by default, switched on through the staff API.
    created = api.post(
        URL, {"model": "gpt-4o", "base_url": f"{standin.url}/v1", "upstream_model": "standin-4o"}, format="json"
    )
    assert created.status_code == 201 and created.json()["forwards_service_tier"] is False
    caches_clear()
    client.chat.completions.create(model="gpt-4o", messages=messages, service_tier="priority", stream=False)
    assert standin.bodies[-1]["model"] == "standin-4o" and "service_tier" not in standin.bodies[-1]
    changed = api.patch(f"{URL}{created.json()['id']}/", {"forwards_service_tier": True}, format="json")
    assert changed.status_code == 200 and changed.json()["forwards_service_tier"] is True
    list(client.chat.completions.create(model="gpt-4o", messages=messages, service_tier="auto", stream=True))
    assert standin.bodies[-1]["service_tier"] == "auto"
    assert (
        api.patch(f"{URL}{created.json()['id']}/", {"forwards_service_tier": "maybe"}, format="json").status_code == 400
    )


BAD_BASE_URLS = [
    "http://[::1",
    "https://host:99999/v1",
    "https://host:abc/v1",
    "https://host:0/v1",
    "https://host/v1?",
    "https://host/v1?x=1",
    "https://host/v1#",
    "https://host/v1#part",
    "https://ho st/v1",
    "https://host/v 1",
    "https://host\n/v1",
    "http://host\x7f/v1",
    "https://@host/v1",
    "https://user@host/v1",
    "https://:pw@host/v1",
    "https://-/v1",
    "https:///v1",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//host/v1",
    "x" * 501,
]


@pytest.mark.parametrize("base_url", BAD_BASE_URLS)
def test_a_base_url_that_is_not_a_plain_http_url_with_a_host_is_refused_on_create_and_change(api, base_url):
    response = api.post(URL, {"model": "gpt-4o", "base_url": base_url}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "base_url"
    assert not Upstream.objects.exists()
    created = api.post(URL, {"model": "gpt-4o", "base_url": "https://models.example.com/v1"}, format="json")
    changed = api.patch(f"{URL}{created.json()['id']}/", {"base_url": base_url}, format="json")
    assert changed.status_code == 400, changed.content
    assert changed.json()["error"]["param"] == "base_url"
    assert Upstream.objects.get().base_url == "https://models.example.com/v1"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("HTTPS://Models.example.com/v1/", "https://Models.example.com/v1"),
        ("http://vllm_server:8000/v1", "http://vllm_server:8000/v1"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
        ("http://10.0.0.7/v1", "http://10.0.0.7/v1"),
        ("  https://bücher.example/v1\t", "https://bücher.example/v1"),
    ],
)
def test_good_base_urls_are_stored_normalized(api, given, stored):
    response = api.post(URL, {"model": "gpt-4o", "base_url": given}, format="json")
    assert response.status_code == 201, response.content
    assert Upstream.objects.get().base_url == stored
