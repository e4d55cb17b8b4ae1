"""Staff refunds of unused paid credit: the credit leaves the wallet first, then Stripe (localstripe) refunds the
card; when Stripe refuses the credit comes back, when it cannot be reached the refund waits and is resumed."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from accounts.models import AuditEvent
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import Grant, JournalTransaction
from billing.payments import services
from billing.payments.models import Refund, TopUp
from billing.payments.stripe_client import stripe_client
from tests.accounts.factories import UserFactory
from tests.billing.payments.helpers import (
    CARD_OK,
    available,
    browser_confirm_card_setup,
    close_db_connections,
    stripe_signature,
    usd,
)


def pay(org, user, localstripe, amount: str = "20.00") -> TopUp:
    """A top-up paid at localstripe, its payment_intent.succeeded event processed as the webhook would."""
    started = services.topup_start(organization_id=org.pk, amount=amount, actor=user)
    setup_intent = browser_confirm_card_setup(localstripe.url, started.setup_intent_client_secret, CARD_OK)
    services.topup_pay(organization_id=org.pk, top_up_id=started.top_up.pk, setup_intent_id=setup_intent["id"])
    top_up = TopUp.objects.get(pk=started.top_up.pk)
    events = stripe_client().v1.events.list(params={"type": "payment_intent.succeeded", "limit": 100})
    event = next(e for e in events.data if e.data.object.id == top_up.stripe_payment_intent_id)
    payload = json.dumps(event.to_dict())
    stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
    services.stripe_event_process(stripe_event_id=stored.pk)
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"
    return top_up


@pytest.fixture
def staff(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="sam@example.com", is_staff=True))
    return client


@pytest.fixture
def paid(org_a, alice, localstripe) -> TopUp:
    return pay(org_a, alice, localstripe)


def refund(client: Client, body: object) -> object:
    return client.post("/api/staff/refunds/", body, content_type="application/json")


def test_only_staff_may_refund(alice_client, db):
    assert refund(alice_client, {"top_up_id": 1, "reason": "x"}).status_code == 403
    assert refund(Client(), {"top_up_id": 1, "reason": "x"}).status_code == 401
    assert alice_client.get("/api/staff/refunds/").status_code == 403


def test_a_full_refund_takes_the_credit_out_and_refunds_the_card(staff, paid, org_a):
    response = refund(staff, {"top_up_id": paid.pk, "reason": "customer asked"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["amount"], body["amount_nano"], body["error"]) == ("succeeded", "20.00", usd("20"), "")
    assert available(org_a.pk) == 0
    stripe_refund = stripe_client().v1.refunds.retrieve(body["stripe_refund_id"])
    assert (stripe_refund.amount, stripe_refund.payment_intent) == (2000, paid.stripe_payment_intent_id)
    assert stripe_refund.metadata.to_dict()["refund_id"] == str(body["id"])
    assert JournalTransaction.objects.get(pk=body["ledger_transaction_id"]).kind == "refund"
    paid.refresh_from_db()
    assert paid.refunded_nano == usd("20")
    audit = AuditEvent.objects.get(action="top_up.refund")
    assert (audit.actor_label, audit.reason, audit.organization_id) == ("sam@example.com", "customer asked", org_a.pk)
    wallet = ledger_selectors.wallet_of(organization_id=org_a.pk)
    assert ledger_selectors.wallet_reconcile(wallet_id=wallet.pk) == []
    listed = staff.get(f"/api/staff/refunds/?organization_id={org_a.pk}").json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert staff.get(f"/api/staff/refunds/{body['id']}/").json()["status"] == "succeeded"


def test_only_unused_credit_can_be_refunded(staff, paid, org_a):
    ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("5"), idempotency_key="use", actor="t")
    top_ups = staff.get(f"/api/staff/top-ups/?organization_id={org_a.pk}").json()["results"]
    assert (top_ups[0]["refundable"], top_ups[0]["refundable_nano"]) == ("15.00", usd("15"))

    too_much = refund(staff, {"top_up_id": paid.pk, "amount": "15.01", "reason": "r"})
    assert too_much.status_code == 400
    assert too_much.json()["error"]["code"] == "exceeds_refundable"
    assert "at most 15.00 USD" in too_much.json()["error"]["message"]
    assert refund(staff, {"top_up_id": paid.pk, "amount": "10.00", "reason": "r"}).json()["status"] == "succeeded"
    assert refund(staff, {"top_up_id": paid.pk, "reason": "the rest"}).json()["amount"] == "5.00"
    nothing = refund(staff, {"top_up_id": paid.pk, "reason": "again"})
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (400, "nothing_to_refund")
    assert available(org_a.pk) == 0
    paid.refresh_from_db()
    assert paid.refunded_nano == usd("15")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"reason": "r"}, 400, "top_up_id"),
        ({"top_up_id": "abc", "reason": "r"}, 400, "top_up_id"),
        ({"top_up_id": 0, "reason": "r"}, 400, "top_up_id"),
        ({"top_up_id": 10**30, "reason": "r"}, 400, "top_up_id"),
        ({"top_up_id": 999999999, "reason": "r"}, 404, "top_up_id"),
        ({"top_up_id": "PAID"}, 400, "reason"),
        ({"top_up_id": "PAID", "reason": "   "}, 400, "reason"),
        ({"top_up_id": "PAID", "reason": "r", "amount": "abc"}, 400, "amount"),
        ({"top_up_id": "PAID", "reason": "r", "amount": "-1"}, 400, "amount"),
        ({"top_up_id": "PAID", "reason": "r", "amount": "1.001"}, 400, "amount"),
        ({"top_up_id": "PAID", "reason": "r", "amount": "0"}, 400, "amount"),
    ],
)
def test_bad_refund_requests_are_refused_with_a_message(staff, paid, org_a, body, status, param):
    body = {k: (paid.pk if v == "PAID" else v) for k, v in body.items()}
    response = refund(staff, body)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["param"] == param and error["message"]
    assert not Refund.objects.exists()
    assert available(org_a.pk) == usd("20")


def test_malformed_json_is_refused(staff, db):
    response = staff.post("/api/staff/refunds/", b"{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_a_top_up_that_was_not_paid_cannot_be_refunded(staff, org_a):
    pending = TopUp.objects.create(organization=org_a, kind="manual", amount_nano=usd("20"))
    response = refund(staff, {"top_up_id": pending.pk, "reason": "r"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "not_paid")


def test_when_stripe_refuses_the_credit_comes_back(staff, paid, org_a):
    real_payment_intent = paid.stripe_payment_intent_id
    # A PaymentIntent Stripe does not know (as after switching Stripe accounts): a definite refusal.
    TopUp.objects.filter(pk=paid.pk).update(stripe_payment_intent_id="pi_unknown_to_stripe")
    response = refund(staff, {"top_up_id": paid.pk, "reason": "r"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "failed" and "Stripe refused the refund" in body["error"]
    assert available(org_a.pk) == usd("20")
    restored = Grant.objects.get(pk=body["restore_grant_id"])
    assert (restored.kind, restored.amount_nano, restored.remaining_nano) == ("paid", usd("20"), usd("20"))
    paid.refresh_from_db()
    assert paid.refunded_nano == 0
    assert AuditEvent.objects.filter(action="top_up.refund_failed").count() == 1

    # With the payment back in order, a new refund draws from the restored credit.
    TopUp.objects.filter(pk=paid.pk).update(stripe_payment_intent_id=real_payment_intent)
    again = refund(staff, {"top_up_id": paid.pk, "reason": "r"}).json()
    assert (again["status"], again["grant_id"]) == ("succeeded", restored.pk)
    assert available(org_a.pk) == 0
    wallet = ledger_selectors.wallet_of(organization_id=org_a.pk)
    assert ledger_selectors.wallet_reconcile(wallet_id=wallet.pk) == []


def test_when_stripe_cannot_be_reached_the_refund_waits_and_is_resumed(staff, paid, org_a, settings):
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    response = refund(staff, {"top_up_id": paid.pk, "reason": "r"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending" and "Stripe not reached" in body["error"]
    assert available(org_a.pk) == 0  # the credit stays out: the money may already be on its way back

    settings.STRIPE_API_BASE = base
    assert services.refunds_resume(older_than_seconds=0) == 1
    done = Refund.objects.get(pk=body["id"])
    assert (done.status, done.error) == ("succeeded", "")
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert len(refunds.data) == 1
    assert services.refunds_resume(older_than_seconds=0) == 0


def test_a_refund_stripe_reports_failed_later_puts_the_credit_back(staff, paid, org_a):
    body = refund(staff, {"top_up_id": paid.pk, "reason": "r"}).json()
    event = {
        "id": "evt_refund_failed_1",
        "object": "event",
        "type": "refund.failed",
        "data": {
            "object": {
                "id": body["stripe_refund_id"],
                "object": "refund",
                "status": "failed",
                "failure_reason": "expired_or_canceled_card",
                "metadata": {"refund_id": str(body["id"])},
            }
        },
    }
    payload = json.dumps(event)
    stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
    assert services.stripe_event_process(stripe_event_id=stored.pk).status == "processed"
    failed = Refund.objects.get(pk=body["id"])
    assert failed.status == "failed" and "expired_or_canceled_card" in failed.error
    assert available(org_a.pk) == usd("20")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_return_more_than_the_unused_credit(org_a, alice, localstripe):
    paid = pay(org_a, alice, localstripe)
    sam = UserFactory(username="sam@example.com", is_staff=True)
    barrier = threading.Barrier(6)

    def attempt(_: int) -> str:
        try:
            barrier.wait()
            return services.refund_create(top_up_id=paid.pk, amount="5.00", reason="r", actor=sam).status
        except Exception as exc:
            return getattr(exc, "code", type(exc).__name__)
        finally:
            close_db_connections()

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = sorted(pool.map(attempt, range(6)))
    assert outcomes == ["nothing_to_refund", "nothing_to_refund", "succeeded", "succeeded", "succeeded", "succeeded"]
    assert available(org_a.pk) == 0
    paid.refresh_from_db()
    assert paid.refunded_nano == usd("20")
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert sum(r.amount for r in refunds.data) == 2000


def test_the_staff_endpoints_are_in_the_openapi_schema(staff):
    schema = staff.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/staff/refunds/", "/api/staff/refunds/{refund_id}/", "/api/staff/top-ups/"} <= set(schema["paths"])
    assert not any(path.startswith("/billing/") for path in schema["paths"])
