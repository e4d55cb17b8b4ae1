"""The OpenAPI schemas and docs pages: the public one documents the metered API (/v1) for anyone, the staff one
documents the staff REST API for staff only, and the docs pages load nothing from another origin."""

import io
import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

V1_OPERATIONS = {
    "/v1/chat/completions": "post",
    "/v1/embeddings": "post",
    "/v1/models": "get",
    "/v1/models/{model}": "get",
    "/v1/tokenize": "post",
    "/v1/balance": "get",
    "/v1/usage/events": "post",
}


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="dana@operator.example", is_staff=True))
    return client


@pytest.fixture
def customer_client(client, alice):
    client.force_login(alice)
    return client


def schema_of(response):
    assert response.status_code == 200, response.content[:300]
    return json.loads(response.content)


def test_the_public_schema_documents_the_metered_api_and_no_staff_operation(client):
    schema = schema_of(client.get("/api/schema/?format=json"))
    assert set(V1_OPERATIONS) <= set(schema["paths"])
    assert not [path for path in schema["paths"] if path.startswith("/api/staff/")]
    assert "staff" not in json.dumps(schema.get("tags", [])).lower()
    # Metered keys and admin keys (the organization's billing data only) for /v1, the web session for the customer
    # endpoints under /api/ (budgets).
    assert set(schema["components"]["securitySchemes"]) == {"apiKeyAuth", "adminKeyAuth", "cookieAuth"}
    # The YAML a browser gets by default is the same document.
    assert client.get("/api/schema/").status_code == 200


def test_every_v1_operation_has_its_body_errors_and_headers_documented(client):
    schema = schema_of(client.get("/api/schema/?format=json"))
    components = schema["components"]
    for path, method in V1_OPERATIONS.items():
        operation = schema["paths"][path][method]
        assert operation["security"] == [{"apiKeyAuth": []}], path
        responses = operation["responses"]
        assert {"200", "401", "500"} <= set(responses), path
        ok = responses["200"]["content"]["application/json"]
        assert "$ref" in ok["schema"], path
        if method == "post":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert components["schemas"][body["$ref"].rsplit("/", 1)[1]].get("example"), path
            assert "400" in responses and "413" in responses, path
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"402", "403", "404", "429", "502", "504"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    assert {"x-billing-charge", "x-billing-balance-remaining", "x-ratelimit-remaining-tokens"} <= set(
        chat["200"]["headers"]
    )
    rate_limited = components["responses"]["RateLimited"]
    assert {"retry-after", "x-ratelimit-limit-requests", "x-ratelimit-reset-tokens"} <= set(rate_limited["headers"])
    # OpenAI's error shape, with an example for each error response.
    error = components["schemas"]["ErrorDetail"]
    assert error["required"] == ["message", "type", "param", "code"]
    for name, response in components["responses"].items():
        assert response["content"]["application/json"]["examples"], name
    assert components["responses"]["PaymentRequired"]["content"]["application/json"]["examples"]["insufficient_credit"][
        "value"
    ]["error"]["code"] == ("insufficient_credit")


def test_the_organization_operations_need_an_admin_key_and_document_their_parameters(client):
    schema = schema_of(client.get("/api/schema/?format=json"))
    for path in (
        "/v1/organization/costs",
        "/v1/organization/usage/completions",
        "/v1/organization/usage/embeddings",
        "/v1/organization/balance",
    ):
        operation = schema["paths"][path]["get"]
        assert operation["security"] == [{"adminKeyAuth": []}], path
        assert {"200", "401", "403", "500"} <= set(operation["responses"]), path
    costs = schema["paths"]["/v1/organization/costs"]["get"]
    parameters = {p["name"]: p for p in costs["parameters"]}
    assert parameters["start_time"]["required"] and "400" in costs["responses"]
    assert parameters["group_by"]["schema"]["items"]["enum"] == ["model", "api_key_id", "workflow", "line_item"]


def test_the_documented_limits_are_the_ones_the_gateway_enforces(client, settings):
    from api.gateway import params

    schema = schema_of(client.get("/api/schema/?format=json"))
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["n"]["maximum"] == params.MAX_CHOICES
    assert chat["service_tier"]["enum"] == list(params.SERVICE_TIERS)
    assert str(settings.GATEWAY_MAX_BODY_BYTES) in schema["components"]["responses"]["RequestTooLarge"]["description"]


@pytest.mark.parametrize("url", ["/api/staff/schema/", "/api/staff/schema/?format=json"])
def test_the_staff_schema_needs_staff(client, customer_client, url):
    from django.test import Client

    assert Client().get(url).status_code == 401
    assert customer_client.get(url).status_code == 403


def test_the_staff_schema_documents_the_staff_api_for_staff(staff_client):
    schema = schema_of(staff_client.get("/api/staff/schema/?format=json"))
    for path in (
        "/api/staff/organizations/",
        "/api/staff/organizations/{organization_id}/credit-grants/",
        "/api/staff/refunds/",
        "/api/staff/price-versions/",
        "/api/staff/upstreams/",
    ):
        assert path in schema["paths"]
    assert all(path.startswith("/api/staff/") for path in schema["paths"])
    assert "/api/staff/schema/" not in schema["paths"]


def test_the_staff_docs_page_needs_staff(client, customer_client):
    from django.test import Client

    anonymous = Client().get("/api/staff/docs/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/?next=/api/staff/docs/")
    assert customer_client.get("/api/staff/docs/").status_code == 403


def test_the_full_schema_validates_with_no_warnings_and_holds_both_apis():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    paths = json.loads(out.getvalue())["paths"]
    assert set(V1_OPERATIONS) <= set(paths)
    assert "/api/staff/organizations/{organization_id}/credit-grants/" in paths


class _Resources(HTMLParser):
    """Every URL a page makes the browser load: scripts, stylesheets, fonts, images, frames, preconnects."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "spec-url", "data", "srcset"):
            if values.get(name):
                self.urls.append(values[name] or "")
        if tag == "script" and not values.get("src"):
            self.inline_scripts += 1
        if values.get("style"):
            self.urls.extend(re.findall(r"url\(([^)]+)\)", values["style"] or ""))


def _same_origin(page_url: str, url: str) -> bool:
    absolute = urlsplit(urljoin(page_url, url))
    return (absolute.scheme, absolute.netloc) == ("http", "testserver")


@pytest.mark.parametrize(("url", "schema_url"), [("/api/docs/", "/api/schema/"), ("/api/staff/docs/", None)])
def test_the_docs_pages_load_nothing_from_another_origin(staff_client, settings, url, schema_url):
    page = staff_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    resources = _Resources()
    resources.feed(html)
    # An empty data: favicon is part of the page itself (it spares the browser a request for /favicon.ico).
    resources.urls = [u for u in resources.urls if u != "data:,"]
    assert resources.urls, "the page loads Redoc and the schema"
    assert [u for u in resources.urls if not _same_origin(f"http://testserver{url}", u)] == []
    assert resources.inline_scripts == 0
    assert "fonts.googleapis" not in html and "cdn" not in html.lower()
    # Everything it loads is there: Redoc's bundle (among the static files) and the schema.
    for loaded in resources.urls:
        if loaded.startswith(settings.STATIC_URL):
            assert finders.find(loaded.removeprefix(settings.STATIC_URL)), loaded
        else:
            assert staff_client.get(loaded).status_code == 200, loaded
    assert "drf_spectacular_sidecar/redoc" in html
    if schema_url:
        assert f'spec-url="{schema_url}?format=json"' in html
    policy = page["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "font-src 'self'" in policy
