"""The webhooks REST API with API keys: endpoints created, changed and deleted; bad input answered 400 with a message
naming the field; another organization's ids 404; keys without the webhooks scope refused; the test event and
redelivery reaching a real receiver; the operations in the public schema."""

import json

import pytest
from django.test import Client

from accounts.models import AuditEvent
from accounts.services import apikey_create
from billing.webhooks import services
from billing.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tests.billing.webhooks import receiver as receivers

receiver = receivers.receiver  # the fixture
API = "/api/webhooks/endpoints/"


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


def post_json(client, url, body, method="post"):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def error_of(response):
    return response.json()["error"]


def key_client(organization, **scopes) -> Client:
    _, secret = apikey_create(organization_id=organization.pk, name="hooks", scopes=scopes or None)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


@pytest.fixture
def as_alice(org_a):
    return key_client(org_a)


@pytest.fixture
def as_bob(org_a):
    return key_client(org_a, endpoints=["webhooks"])


@pytest.fixture
def as_charlie(org_b):
    return key_client(org_b)


@pytest.fixture
def committing(django_capture_on_commit_callbacks):
    def run(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


@pytest.fixture
def theirs(org_b):
    return services.webhook_endpoint_create(
        organization_id=org_b.pk, actor=None, url="https://hooks.example.com/b", event_types=["invoice.issued"]
    )


def test_create_list_change_and_delete_through_the_api(as_bob, org_a):
    created = post_json(
        as_bob, API, {"url": "https://hooks.example.com/in", "event_types": ["top_up.failed", "balance.low"]}
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["event_types"] == ["balance.low", "top_up.failed"] and body["enabled"] is True
    assert body["secret"].startswith("whsec_")
    assert [e["id"] for e in as_bob.get(API).json()] == [body["id"]]
    assert as_bob.get(f"{API}{body['id']}/").json()["secret"] == body["secret"]
    changed = post_json(as_bob, f"{API}{body['id']}/", {"enabled": False, "event_types": ["invoice.issued"]}, "patch")
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    rotated = as_bob.post(f"{API}{body['id']}/rotate_secret/").json()
    assert rotated["secret"] != body["secret"]
    assert as_bob.delete(f"{API}{body['id']}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="webhook.").count() == 4


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"url": "ftp://hooks.example.com", "event_types": ["balance.low"]}, "url", "http:// or https://"),
        ({"url": "hooks.example.com/in", "event_types": ["balance.low"]}, "url", "http:// or https://"),
        ({"url": "not a url", "event_types": ["balance.low"]}, "url", "spaces"),
        ({"url": "https://user:pw@hooks.example.com", "event_types": ["balance.low"]}, "url", "user name"),
        ({"url": "https://hooks.example.com:99999/", "event_types": ["balance.low"]}, "url", "port"),
        ({"url": 12, "event_types": ["balance.low"]}, "url", "URL"),
        ({"url": "https://hooks.example.com/a\x00b", "event_types": ["balance.low"]}, "url", "control characters"),
        (
            {"url": "https://hooks.example.com", "event_types": ["balance.low"], "description": "a\x00"},
            "description",
            "text",
        ),
        ({"url": "https://hooks.example.com", "event_types": ["balance.lo"]}, "event_types", "unknown event type"),
        ({"url": "https://hooks.example.com", "event_types": ["webhook.test"]}, "event_types", "unknown event type"),
        ({"url": "https://hooks.example.com", "event_types": []}, "event_types", "at least one"),
        ({"url": "https://hooks.example.com", "event_types": "balance.low"}, "event_types", "a list"),
        ({"url": "https://hooks.example.com", "event_types": [1]}, "event_types", "unknown event type"),
        (
            {"url": "https://hooks.example.com", "event_types": ["balance.low"], "enabled": "yes"},
            "enabled",
            "true or false",
        ),
        (
            {"url": "https://hooks.example.com", "event_types": ["balance.low"], "secret": "x"},
            "secret",
            "unknown field",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(as_alice, body, param, message):
    response = post_json(as_alice, API, body)
    assert response.status_code == 400, response.content
    assert error_of(response)["param"] == param and message in error_of(response)["message"]
    assert not WebhookEndpoint.objects.exists()


def test_malformed_json_and_a_non_object_are_400(as_alice):
    assert as_alice.post(API, data="{", content_type="application/json").status_code == 400
    assert post_json(as_alice, API, ["x"]).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.8/x",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://localhost:8000/",
    ],
)
def test_a_private_target_is_refused_unless_the_operator_allows_it(as_alice, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    response = post_json(as_alice, API, {"url": url, "event_types": ["balance.low"]})
    assert response.status_code == 400 and error_of(response)["code"] == "private_target"
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    assert post_json(as_alice, API, {"url": url, "event_types": ["balance.low"]}).status_code == 201


def test_another_organizations_endpoint_is_404_everywhere(as_alice, theirs):
    base = f"{API}{theirs.pk}/"
    assert as_alice.get(base).status_code == 404
    assert post_json(as_alice, base, {"enabled": False}, "patch").status_code == 404
    assert as_alice.delete(base).status_code == 404
    assert as_alice.post(f"{base}test/").status_code == 404
    assert as_alice.post(f"{base}rotate_secret/").status_code == 404
    assert as_alice.get(f"{base}deliveries/").status_code == 404
    assert as_alice.get(f"{API}nope/").status_code == 404
    assert as_alice.get(f"{API}99999999/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.enabled and not WebhookDelivery.objects.exists()


def test_a_delivery_of_another_endpoint_cannot_be_redelivered(as_alice, as_charlie, org_a, theirs, receiver):
    ours = services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url=receiver.url, event_types=["invoice.issued"]
    )
    their_delivery = services.webhook_test_send(
        organization_id=theirs.organization_id, endpoint_id=theirs.pk, actor=None
    )
    assert as_alice.post(f"{API}{ours.pk}/deliveries/{their_delivery.pk}/redeliver/").status_code == 404
    assert as_charlie.post(f"{API}{theirs.pk}/deliveries/{their_delivery.pk}/redeliver/").status_code == 202


def test_a_key_needs_the_webhooks_scope_and_a_request_needs_a_key(org_a, as_alice, client):
    body = {"url": "https://hooks.example.com/in", "event_types": ["balance.low"]}
    chat_only = key_client(org_a, endpoints=["chat"])
    refused = post_json(chat_only, API, body)
    assert refused.status_code == 403 and "webhooks" in error_of(refused)["message"]
    assert chat_only.get(API).status_code == 403
    assert post_json(client, API, body).status_code == 401
    assert post_json(Client(HTTP_AUTHORIZATION="Bearer sk-tb-nonsense"), API, body).status_code == 401
    assert post_json(Client(HTTP_AUTHORIZATION="Token x"), API, body).status_code == 401
    assert post_json(as_alice, API, body).status_code == 201
    assert AuditEvent.objects.get(action="webhook.create").actor_label.startswith("api key ")


def test_the_test_event_and_redelivery_reach_the_receiver(as_alice, org_a, receiver, committing, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    endpoint = post_json(as_alice, API, {"url": receiver.url, "event_types": ["balance.low"]}).json()
    sent = committing(as_alice.post, f"{API}{endpoint['id']}/test/")
    assert sent.status_code == 202 and sent.json()["event_type"] == "webhook.test"
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert len(receiver.requests) == 1
    again = committing(as_alice.post, f"{API}{endpoint['id']}/deliveries/{delivery.pk}/redeliver/")
    assert again.status_code == 202
    assert [r.headers["Webhook-Id"] for r in receiver.requests] == [delivery.event.event_id] * 2
    listed = as_alice.get(f"{API}{endpoint['id']}/deliveries/").json()
    assert listed["count"] == 1
    (row,) = listed["results"]
    assert row["status"] == "succeeded" and [a["status_code"] for a in row["attempt_log"]] == [200, 200]


def test_the_schema_documents_the_api(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/webhooks/endpoints/" in schema["paths"]
    assert "/api/webhooks/endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver/" in schema["paths"]
    assert schema["paths"]["/api/webhooks/endpoints/"]["post"]["security"] == [{"apiKeyAuth": []}]
    # The webhooks API takes API keys only (the schema's other schemes serve other paths).
    assert set(schema["components"]["securitySchemes"]) == {"apiKeyAuth", "adminKeyAuth", "cookieAuth"}
