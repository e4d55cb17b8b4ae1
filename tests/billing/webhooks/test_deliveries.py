"""Deliveries to a real HTTP receiver: signed as documented, retried with backoff until they get through (once),
one per endpoint per event, never to a private address unless allowed, never following a redirect."""

import re
import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from billing.webhooks import services, tasks, transport
from billing.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent
from billing.webhooks.services.deliveries import retry_delay
from billing.webhooks.services.events import webhook_test_event_record

README = Path(__file__).resolve().parents[3] / "README.md"


def verify_recipe():
    """The README's verification recipe, run as a receiver would copy it."""
    text = README.read_text()
    block = re.search(r"<!-- webhook-verify-recipe -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README has no verification recipe"
    namespace: dict = {}
    exec(block.group(1), namespace)  # noqa: S102 (our own README's code, the point of the test)
    return namespace["verify_webhook"]


@pytest.fixture
def endpoint(org_a, receiver):
    return services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url=receiver.url, event_types=["top_up.succeeded", "balance.low"]
    )


def emit(org, key="top_up.succeeded:1", event_type="top_up.succeeded"):
    return services.webhook_event_emit(
        organization_id=org.pk,
        event_type=event_type,
        data={"top_up": {"id": 1, "amount": "20.00"}},
        idempotency_key=key,
    )


def attempt_due(delivery):
    """Run the delivery's next attempt at the time it is due (as Celery's countdown would)."""
    delivery.refresh_from_db()
    with time_machine.travel(delivery.next_attempt_at + timedelta(milliseconds=1), tick=True):
        return services.webhook_delivery_attempt(delivery_id=delivery.pk)


def test_the_signature_verifies_with_the_readme_recipe(org_a, endpoint, receiver):
    event = emit(org_a)
    delivery = WebhookDelivery.objects.get(event=event)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).sent
    (request,) = receiver.requests
    verify = verify_recipe()
    header = request.headers["Webhook-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify(request.body, header, endpoint.secret)
    assert request.body == event.body.encode()
    assert request.headers["Webhook-Id"] == event.event_id
    assert request.headers["Webhook-Event-Type"] == "top_up.succeeded"
    # Another secret, a changed body, a stale timestamp: refused.
    assert not verify(request.body, header, endpoint.secret + "x")
    assert not verify(request.body.replace(b"20.00", b"99.00"), header, endpoint.secret)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert not verify(request.body, header, endpoint.secret)
    assert not verify(request.body, "v1=" + header.split("v1=")[1], endpoint.secret)


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_try_once(org_a, endpoint, receiver):
    receiver.fail_first = 3
    event = emit(org_a)
    delivery = WebhookDelivery.objects.get(event=event)
    first = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert first.sent and first.delivery.status == DeliveryStatus.PENDING
    gaps = []
    for _ in range(3):
        before = first.delivery.next_attempt_at
        result = attempt_due(delivery)
        assert result.sent
        gaps.append(before)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 4
    assert [r.answered for r in receiver.requests] == [500, 500, 500, 200]
    assert len(receiver.delivered) == 1
    # Every try is the same event, signed anew, and verifies.
    assert {r.body for r in receiver.requests} == {event.body.encode()}
    assert all(verify_recipe()(r.body, r.headers["Webhook-Signature"], endpoint.secret) for r in receiver.delivered)
    assert [r.headers["Webhook-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    log = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in log] == [
        (1, 500, False),
        (2, 500, False),
        (3, 500, False),
        (4, 200, True),
    ]
    assert log[0].error == "the endpoint answered 500"
    # Delivered: a late task, the sweep, or the same event emitted again send nothing more.
    assert not services.webhook_delivery_attempt(delivery_id=delivery.pk).sent
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert services.webhook_deliveries_due() == []
    assert emit(org_a) == event
    assert len(receiver.requests) == 4


def test_backoff_doubles_and_gives_up_after_a_day(org_a, endpoint, receiver, settings):
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(30) == timedelta(hours=4)
    receiver.status = 503
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    services.webhook_delivery_attempt(delivery_id=delivery.pk)
    while True:
        result = attempt_due(delivery)
        if result.delivery.status != DeliveryStatus.PENDING:
            break
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    span = delivery.attempt_log.order_by("number").last().started_at - delivery.created_at
    assert timedelta(hours=18) < span <= timedelta(days=1)
    assert 10 < delivery.attempts < 20
    # A redelivery by hand sends it again now, and it goes through.
    receiver.status = 200
    services.webhook_delivery_redeliver(
        organization_id=org_a.pk, endpoint_id=endpoint.pk, delivery_id=delivery.pk, actor=None
    )
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).delivery.status == DeliveryStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_one_event_is_one_delivery_per_endpoint_even_when_emitted_concurrently(org_a, receiver):
    for url in (receiver.url, receiver.url + "/second"):
        services.webhook_endpoint_create(organization_id=org_a.pk, actor=None, url=url, event_types=["balance.low"])
    services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url=receiver.url, event_types=["top_up.failed"]
    )
    services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url=receiver.url, event_types=["balance.low"], enabled=False
    )
    barrier = threading.Barrier(8)
    errors = []

    def racer():
        try:
            barrier.wait()
            emit(org_a, key="balance.low:2026-12-06", event_type="balance.low")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert WebhookEvent.objects.count() == 1
    # The two enabled endpoints subscribed to balance.low; not the one for top-ups, not the disabled one.
    assert WebhookDelivery.objects.count() == 2


def test_nothing_is_stored_when_no_endpoint_listens(org_a, org_b, endpoint):
    assert emit(org_b) is None
    assert emit(org_a, key="x", event_type="invoice.issued") is None
    assert WebhookEvent.objects.count() == 0
    with pytest.raises(ValueError):
        emit(org_a, event_type="webhook.test")


def test_a_private_address_is_refused_unless_allowed(org_a, endpoint, receiver, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    result = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert result.sent and receiver.requests == []
    assert result.delivery.status == DeliveryStatus.PENDING
    assert "127.0.0.1, a private, loopback or link-local address" in result.delivery.last_error
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    assert attempt_due(delivery).delivery.status == DeliveryStatus.SUCCEEDED
    assert len(receiver.delivered) == 1


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["192.168.0.10"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["::1"],
        ["fe80::1"],
        ["fd00::1"],
        ["::ffff:127.0.0.1"],
        ["0.0.0.0"],  # noqa: S104 (an address to refuse, not one to bind)
        ["93.184.215.14", "10.0.0.1"],  # one private answer among public ones
    ],
)
def test_every_resolved_address_is_checked(addresses, monkeypatch, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443)) for ip in addresses],
    )
    with pytest.raises(transport.TargetRefused):
        transport.target_resolve("https://hooks.example.com/x")


def test_the_connection_goes_to_the_address_that_was_checked(org_a, endpoint, receiver, monkeypatch):
    """The name is resolved once; the request reaches the checked address with the name in its Host header (a
    second lookup, which DNS rebinding would answer differently, never happens)."""
    real = socket.getaddrinfo
    lookups = []

    def lookup(host, *args, **kwargs):
        lookups.append(host)
        if host == "hooks.customer.test":
            return real("127.0.0.1", *args, **kwargs)
        raise AssertionError(f"unexpected lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    port = receiver.server.server_address[1]
    services.webhook_endpoint_update(
        organization_id=org_a.pk, endpoint_id=endpoint.pk, actor=None, url=f"http://hooks.customer.test:{port}/in"
    )
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).delivery.status == DeliveryStatus.SUCCEEDED
    assert lookups == ["hooks.customer.test"]
    (request,) = receiver.requests
    assert request.headers["Host"] == f"hooks.customer.test:{port}" and request.path == "/in"


def test_a_redirect_is_not_followed(org_a, endpoint, receiver):
    receiver.status = 302
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    result = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert len(receiver.requests) == 1  # nothing went to /elsewhere
    assert result.delivery.status == DeliveryStatus.PENDING and result.delivery.last_status_code == 302
    assert "redirects are not followed" in result.delivery.last_error


def test_a_slow_receiver_times_out(org_a, endpoint, receiver, settings):
    settings.WEBHOOKS_TIMEOUT_SECONDS = 1
    receiver.delay = 2
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    result = services.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert result.delivery.status == DeliveryStatus.PENDING
    assert "timed out" in result.delivery.last_error
    assert result.delivery.attempt_log.get().duration_ms < 1900


def test_a_test_event_goes_to_one_endpoint_even_when_disabled(org_a, endpoint, receiver):
    services.webhook_endpoint_update(organization_id=org_a.pk, endpoint_id=endpoint.pk, actor=None, enabled=False)
    delivery = webhook_test_event_record(organization_id=org_a.pk, endpoint_id=endpoint.pk)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk).delivery.status == DeliveryStatus.SUCCEEDED
    assert receiver.requests[0].headers["Webhook-Event-Type"] == "webhook.test"


def test_disabling_an_endpoint_gives_up_its_pending_deliveries(org_a, endpoint, receiver):
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    services.webhook_endpoint_update(organization_id=org_a.pk, endpoint_id=endpoint.pk, actor=None, enabled=False)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert not services.webhook_delivery_attempt(delivery_id=delivery.pk).sent
    assert receiver.requests == []


def test_the_sweep_sends_deliveries_whose_task_was_lost(org_a, endpoint, receiver, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    delivery = WebhookDelivery.objects.get(event=emit(org_a))  # its task was never queued (no commit here)
    assert tasks.webhooks_sweep_task.apply().get() == 0  # not lost yet: just due
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert tasks.webhooks_sweep_task.apply().get() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and len(receiver.requests) == 1


def test_the_task_of_a_deleted_endpoint_ends_quietly(org_a, endpoint, receiver, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    services.webhook_endpoint_delete(organization_id=org_a.pk, endpoint_id=endpoint.pk, actor=None)
    assert tasks.webhook_delivery_task.apply(args=[delivery.pk]).get() == "gone"
    assert receiver.requests == []


def test_a_failed_attempt_queues_the_task_again_for_the_next_time(org_a, endpoint, receiver, monkeypatch):
    receiver.status = 500
    delivery = WebhookDelivery.objects.get(event=emit(org_a))
    scheduled = []
    monkeypatch.setattr(
        tasks.webhook_delivery_task, "retry", lambda **kw: scheduled.append(kw) or RuntimeError("retry")
    )
    with pytest.raises(RuntimeError):
        tasks.webhook_delivery_task.run(delivery.pk)
    delivery.refresh_from_db()
    (retry,) = scheduled
    assert 25 < retry["countdown"] <= 30  # the first backoff step
    assert delivery.attempts == 1 and delivery.status == DeliveryStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_one_delivery_send_it_once(org_a, receiver):
    """Eight workers given the same delivery at once (a task delivered twice, the sweep, a retry): the claim lets one
    of them send it."""
    receiver.delay = 0.2  # the winner is still sending while the others try
    endpoint = services.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url=receiver.url, event_types=["balance.low"]
    )
    delivery = WebhookDelivery.objects.get(event=emit(org_a, event_type="balance.low"))
    barrier = threading.Barrier(8)
    sent = []

    def worker():
        try:
            barrier.wait()
            sent.append(services.webhook_delivery_attempt(delivery_id=delivery.pk).sent)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == [False] * 7 + [True]
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, endpoint.pk) == (DeliveryStatus.SUCCEEDED, 1, delivery.endpoint_id)
