"""POST /stripe/webhook/ over real HTTP: forged and stale requests are refused and store nothing; a genuine event
takes effect once however often (and however concurrently) it is delivered."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings

from billing.ledger.models import Grant
from billing.payments import services
from billing.payments.models import StripeEvent, TopUp
from tests.billing.payments.helpers import (
    CARD_OK,
    available,
    browser_confirm_card_payment,
    charge,
    deliver,
    stripe_signature,
    succeeded_event_json,
    usd,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def succeeded_event(org_a, alice, localstripe) -> tuple[TopUp, str]:
    """A real top-up paid at localstripe whose webhook was not delivered to us: (top-up, the genuine event JSON)."""
    top_up = charge(org_a, alice, localstripe)
    return top_up, succeeded_event_json(top_up)


def test_the_genuine_event_grants_the_credit(webhook_url, succeeded_event, org_a):
    top_up, payload = succeeded_event
    response = deliver(webhook_url, payload)
    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"
    assert available(org_a.pk) == usd("20")


def test_the_same_event_delivered_twenty_times_grants_once(webhook_url, succeeded_event, org_a):
    top_up, payload = succeeded_event
    statuses = [deliver(webhook_url, payload).status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert available(org_a.pk) == usd("20")
    assert Grant.objects.filter(source_ref=top_up.stripe_payment_intent_id).count() == 1
    assert StripeEvent.objects.get(event_id=json.loads(payload)["id"]).attempts == 1


def test_the_same_event_delivered_twenty_times_at_once_grants_once(webhook_url, succeeded_event, org_a):
    top_up, payload = succeeded_event
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: deliver(webhook_url, payload), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.json()["status"] for r in responses} == {"processed"}
    assert available(org_a.pk) == usd("20")
    assert Grant.objects.filter(source_ref=top_up.stripe_payment_intent_id).count() == 1
    assert StripeEvent.objects.filter(event_id=json.loads(payload)["id"]).count() == 1


def test_two_different_events_for_one_payment_grant_once(webhook_url, succeeded_event, org_a):
    _top_up, payload = succeeded_event
    twin = json.loads(payload)
    twin["id"] = twin["id"] + "twin"
    assert deliver(webhook_url, payload).status_code == 200
    assert deliver(webhook_url, twin).status_code == 200
    assert available(org_a.pk) == usd("20")
    assert StripeEvent.objects.filter(type="payment_intent.succeeded").count() == 2


@pytest.mark.parametrize(
    ("name", "signature_options"),
    [
        ("signed with another secret", {"secret": "whsec_attacker"}),
        ("signed ten minutes ago (a replay)", {"timestamp": int(time.time()) - 600}),
    ],
)
def test_forged_or_stale_events_are_refused_and_grant_nothing(
    webhook_url, succeeded_event, org_a, name, signature_options
):
    top_up, payload = succeeded_event
    response = deliver(webhook_url, payload, **signature_options)
    assert response.status_code == 400, name
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert "signature" in error["message"]
    assert not StripeEvent.objects.exists()
    assert available(org_a.pk) == 0
    assert TopUp.objects.get(pk=top_up.pk).status == "processing"


def test_a_tampered_body_is_refused(webhook_url, succeeded_event, org_a):
    _, payload = succeeded_event
    signature = stripe_signature(payload)
    tampered = payload.replace('"amount": 2000', '"amount": 200000')
    response = httpx.post(webhook_url, content=tampered, headers={"Stripe-Signature": signature})
    assert response.status_code == 400
    assert available(org_a.pk) == 0


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b"{}", {}, "missing_signature"),
        (b"not json", None, "invalid_json"),
        (b"\xff\xfe", None, "invalid_json"),
        (b"[]", None, "invalid_event"),
        (b'{"object": "event"}', None, "invalid_event"),
        (b'{"id": "evt_1", "type": 5}', None, "invalid_event"),
        (b'{"id": 12, "type": "payment_intent.succeeded"}', None, "invalid_event"),
    ],
)
def test_malformed_requests_get_400_with_a_message(webhook_url, body, headers, code):
    if headers is None:
        text = body.decode("utf-8", errors="replace")
        headers = {"Stripe-Signature": stripe_signature(text) if body != b"\xff\xfe" else "t=1,v1=00"}
    response = httpx.post(webhook_url, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {code, "invalid_signature"}
    assert response.json()["error"]["message"]
    assert not StripeEvent.objects.exists()


def test_a_signed_non_json_body_is_invalid_json(webhook_url):
    response = httpx.post(webhook_url, content=b"not json", headers={"Stripe-Signature": stripe_signature("not json")})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


def test_get_is_not_allowed(webhook_url):
    response = httpx.get(webhook_url)
    assert response.status_code == 405
    assert response.json()["error"]["message"]


def test_unknown_event_types_are_acknowledged_and_kept(webhook_url):
    event = {"id": "evt_unknown1", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    response = deliver(webhook_url, event)
    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id="evt_unknown1")
    assert stored.status == "ignored"
    assert json.loads(stored.payload) == event


def test_payment_intents_that_are_not_ours_are_ignored(webhook_url):
    event = {
        "id": "evt_foreign1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_foreign", "amount": 500, "currency": "usd", "metadata": {}}},
    }
    assert deliver(webhook_url, event).json()["status"] == "ignored"


def test_a_failing_event_is_kept_with_its_error_and_processed_again_later(webhook_url, succeeded_event, org_a):
    top_up, payload = succeeded_event
    # The event disagrees with our record of the amount: processing fails, the event is kept, nothing is granted.
    TopUp.objects.filter(pk=top_up.pk).update(amount_nano=usd("25"))
    response = deliver(webhook_url, payload)
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    event = StripeEvent.objects.get(event_id=json.loads(payload)["id"])
    assert event.status == "failed" and "2000" in event.error and event.attempts == 1
    assert available(org_a.pk) == 0

    # Once the cause is fixed, the retry processes it (and only once).
    TopUp.objects.filter(pk=top_up.pk).update(amount_nano=usd("20"))
    [retried] = services.stripe_events_retry()
    assert (retried.status, retried.attempts) == ("processed", 2)
    assert services.stripe_events_retry() == []
    assert available(org_a.pk) == usd("20")


def test_localstripe_delivers_its_own_events_signed_with_the_shared_secret(localstripe, live_url, org_a, alice):
    localstripe.register_webhook(url=f"{live_url}/stripe/webhook/", secret=settings.STRIPE_WEBHOOK_SECRET)
    try:
        started = services.topup_start(organization_id=org_a.pk, amount="5.00", actor=alice)
        assert started.payment_intent_client_secret is not None
        browser_confirm_card_payment(localstripe.url, started.payment_intent_client_secret, CARD_OK)
        services.topup_pay(organization_id=org_a.pk, top_up_id=started.top_up.pk)
        wait_for(lambda: available(org_a.pk) == usd("5"), what="localstripe's webhook")
    finally:
        localstripe.register_webhook(url="http://127.0.0.1:9/", secret=settings.STRIPE_WEBHOOK_SECRET)


# --- the credit matches the top-up exactly: PaymentIntent, amount, currency and organization ---


def _event_edited(payload: str, **changes: object) -> dict:
    """The genuine event with some fields of its PaymentIntent changed (and a new event id), signed anew."""
    event = json.loads(payload)
    event["id"] = event["id"] + "edited"
    obj = event["data"]["object"]
    for key, value in changes.items():
        if key == "metadata":
            obj["metadata"] = {**obj.get("metadata", {}), **value}  # type: ignore[dict-item]
        else:
            obj[key] = value
    return event


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("another currency", {"currency": "eur"}),
        ("a larger amount", {"amount": 200000}),
        ("a smaller amount", {"amount": 500}),
        ("the amount as text", {"amount": "2000"}),
        ("another organization in the metadata", {"metadata": {"organization_id": "999999"}}),
        ("another top-up in the metadata", {"metadata": {"top_up_id": "999999"}}),
    ],
)
def test_an_event_that_does_not_match_the_top_up_credits_nothing(webhook_url, succeeded_event, org_a, name, changes):
    top_up, payload = succeeded_event
    response = deliver(webhook_url, _event_edited(payload, **changes))
    assert (response.status_code, response.json()["status"]) == (200, "failed"), name
    top_up.refresh_from_db()
    assert top_up.status == "processing" and top_up.grant_id is None, name
    assert available(org_a.pk) == 0, name
    # The genuine event still credits it, once.
    assert deliver(webhook_url, payload).json()["status"] == "processed"
    assert available(org_a.pk) == usd("20")


def test_an_event_for_another_payment_intent_naming_our_top_up_credits_nothing(webhook_url, succeeded_event, org_a):
    _top_up, payload = succeeded_event
    response = deliver(webhook_url, _event_edited(payload, id="pi_someoneelse"))
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    assert available(org_a.pk) == 0


def test_an_event_naming_another_organizations_top_up_credits_nothing(webhook_url, succeeded_event, org_a, org_b):
    _top_up, payload = succeeded_event
    # Org B's own pending top-up, named by a PaymentIntent of org A: neither is credited from it.
    other = TopUp.objects.create(
        organization=org_b, kind="manual", status="processing", amount_nano=usd("20"), currency="USD"
    )
    edited = _event_edited(
        payload, id="pi_stray", metadata={"top_up_id": str(other.pk), "organization_id": str(org_a.pk)}
    )
    assert deliver(webhook_url, edited).json()["status"] == "failed"
    assert available(org_a.pk) == 0 and available(org_b.pk) == 0


def test_a_failed_top_up_that_later_succeeds_is_credited_once(webhook_url, succeeded_event, org_a):
    top_up, payload = succeeded_event
    failed = json.loads(payload)
    failed["id"] = failed["id"] + "failed"
    failed["type"] = "payment_intent.payment_failed"
    failed["data"]["object"]["status"] = "requires_payment_method"
    failed["data"]["object"]["last_payment_error"] = {"message": "Your card was declined.", "code": "card_declined"}
    assert deliver(webhook_url, failed).json()["status"] == "processed"
    top_up.refresh_from_db()
    assert top_up.status == "failed" and available(org_a.pk) == 0

    # Stripe's retry of the payment succeeds: the money arrived, the top-up is paid.
    assert deliver(webhook_url, payload).json()["status"] == "processed"
    top_up.refresh_from_db()
    assert (top_up.status, top_up.failure_message) == ("succeeded", "")
    assert available(org_a.pk) == usd("20")

    # Replays of either event, and a late failure, change nothing.
    for event in (payload, failed, _event_edited(payload), _event_edited(json.dumps(failed))):
        assert deliver(webhook_url, event).status_code == 200
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"
    assert available(org_a.pk) == usd("20")
    assert Grant.objects.filter(wallet__organization=org_a).count() == 1


# --- bad input never reaches the JSON parser unsigned, and never answers 500 ---


@pytest.mark.parametrize(
    ("name", "signed"),
    [("unsigned", None), ("with a made-up signature", "t=1,v1=00"), ("signed", "sign")],
)
def test_a_deeply_nested_body_gets_400_not_500(webhook_url, name, signed):
    body = "[" * 100_000
    headers = {} if signed is None else {"Stripe-Signature": stripe_signature(body) if signed == "sign" else signed}
    response = httpx.post(webhook_url, content=body.encode(), headers=headers, timeout=30)
    assert response.status_code == 400, name
    expected = {None: "missing_signature", "t=1,v1=00": "invalid_signature", "sign": "invalid_json"}[signed]
    assert response.json()["error"]["code"] == expected, name
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("ahead", [301, 600, 86_400 * 365])
def test_a_signature_dated_in_the_future_beyond_the_tolerance_is_refused(webhook_url, succeeded_event, org_a, ahead):
    _top_up, payload = succeeded_event
    response = deliver(webhook_url, payload, timestamp=int(time.time()) + ahead)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_signature")
    assert "future" in response.json()["error"]["message"]
    assert not StripeEvent.objects.exists()
    assert available(org_a.pk) == 0


def test_a_signature_a_little_ahead_of_our_clock_is_accepted(webhook_url, succeeded_event, org_a):
    # Clocks drift: a timestamp within the tolerance on either side is Stripe's.
    _top_up, payload = succeeded_event
    response = deliver(webhook_url, payload, timestamp=int(time.time()) + 60)
    assert (response.status_code, response.json()["status"]) == (200, "processed")
    assert available(org_a.pk) == usd("20")
