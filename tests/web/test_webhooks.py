"""The Webhooks page: who may use it, bad input shown on the form, another organization's endpoints 404."""

import pytest

from billing.webhooks import services
from billing.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.billing.webhooks import receiver as receivers

receiver = receivers.receiver  # the fixture


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


def test_the_page_adds_an_endpoint_and_refuses_bad_input(as_alice, receiver):
    bad = as_alice.post("/settings/webhooks/", {"url": "gopher://x", "event_types": ["balance.low"], "enabled": "on"})
    assert bad.status_code == 400 and "http:// or https://" in bad.content.decode()
    unknown = as_alice.post("/settings/webhooks/", {"url": receiver.url, "event_types": ["nope"]})
    assert unknown.status_code == 400 and "nope" in unknown.content.decode()
    added = as_alice.post("/settings/webhooks/", {"url": receiver.url, "event_types": ["balance.low"], "enabled": "on"})
    endpoint = WebhookEndpoint.objects.get()
    assert added.status_code == 302 and added["Location"] == f"/settings/webhooks/{endpoint.pk}/?reveal=1"
    page = as_alice.get(added["Location"])
    assert endpoint.secret in page.content.decode() and page["Cache-Control"].startswith("max-age=0")


def test_a_private_target_is_refused_on_the_page(as_alice, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    refused = as_alice.post("/settings/webhooks/", {"url": "http://169.254.169.254/", "event_types": ["balance.low"]})
    assert refused.status_code == 400 and "private, loopback or link-local" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_viewers_may_not_use_the_page_and_the_other_roles_may(as_vera, as_bill, as_bob):
    body = {"url": "https://hooks.example.com/in", "event_types": ["balance.low"], "enabled": "on"}
    assert as_vera.get("/settings/webhooks/").status_code == 403
    assert as_vera.post("/settings/webhooks/", body).status_code == 403
    assert as_bill.post("/settings/webhooks/", body).status_code == 302
    assert as_bob.post("/settings/webhooks/", body).status_code == 302
    assert WebhookEndpoint.objects.count() == 2


def test_another_organizations_endpoint_is_404_on_every_page(as_alice, org_a, org_b):
    theirs = services.webhook_endpoint_create(
        organization_id=org_b.pk, actor=None, url="https://hooks.example.com/b", event_types=["invoice.issued"]
    )
    delivery = services.webhook_test_send(organization_id=org_b.pk, endpoint_id=theirs.pk, actor=None)
    assert as_alice.get(f"/settings/webhooks/{theirs.pk}/").status_code == 404
    for path in ("", "test/", "rotate/", "delete/", f"deliveries/{delivery.pk}/redeliver/"):
        assert as_alice.post(f"/settings/webhooks/{theirs.pk}/{path}").status_code == 404
    ours = services.webhook_endpoint_create(
        organization_id=org_a.pk,
        actor=None,
        url="https://hooks.example.com/a",
        event_types=["invoice.issued"],
    )
    assert as_alice.post(f"/settings/webhooks/{ours.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 404
    theirs.refresh_from_db()
    assert WebhookDelivery.objects.get().attempts == 0 and theirs.secret.startswith("whsec_")


def test_a_delivery_is_redelivered_only_through_its_own_endpoint(as_alice, org_a):
    first, second = (
        services.webhook_endpoint_create(
            organization_id=org_a.pk, actor=None, url=f"https://hooks.example.com/{n}", event_types=["balance.low"]
        )
        for n in (1, 2)
    )
    delivery = services.webhook_test_send(organization_id=org_a.pk, endpoint_id=first.pk, actor=None)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)
    assert as_alice.post(f"/settings/webhooks/{second.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 404
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "failed"  # untouched
    assert as_alice.post(f"/settings/webhooks/{first.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 302
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "pending"
