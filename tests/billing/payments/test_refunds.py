"""Staff refunds of unused paid credit: the credit leaves the wallet first, then Stripe (localstripe) refunds the
card; when Stripe refuses the credit comes back, when it cannot be reached the refund waits and is resumed."""

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
    available,
    close_db_connections,
    pay,
    stripe_signature,
    usd,
)


@pytest.fixture
def staff(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="sam@example.com", is_staff=True))
    return client


def refund(client: Client, body: object, *, key: str | None = None) -> Any:
    """POST a refund with a fresh Idempotency-Key (or the one given)."""
    key = key if key is not None else f"refund-test-{next(_keys)}"
    return client.post("/api/staff/refunds/", body, content_type="application/json", headers={"Idempotency-Key": key})


_keys = itertools.count(1)


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

    def attempt(i: int) -> str:
        try:
            barrier.wait()
            return services.refund_create(
                top_up_id=paid.pk, amount="5.00", reason="r", actor=sam, idempotency_key=f"concurrent-{i}"
            ).refund.status
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
    schema = staff.get("/api/staff/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/staff/refunds/", "/api/staff/refunds/{refund_id}/", "/api/staff/top-ups/"} <= set(schema["paths"])
    assert not any(path.startswith("/billing/") for path in schema["paths"])


# --- a retry cannot refund twice: the Idempotency-Key header is required ---


def test_a_refund_without_an_idempotency_key_is_refused(staff, paid, org_a):
    response = staff.post("/api/staff/refunds/", {"top_up_id": paid.pk, "reason": "r"}, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("idempotency_key", "idempotency_key_required")
    assert "Idempotency-Key" in error["message"]
    assert not Refund.objects.exists()
    assert available(org_a.pk) == usd("20")


def test_a_retried_refund_returns_the_first_and_refunds_nothing_more(staff, paid, org_a):
    first = refund(staff, {"top_up_id": paid.pk, "amount": "5.00", "reason": "r"}, key="ticket-42")
    assert first.status_code == 201
    for _ in range(3):
        again = refund(staff, {"top_up_id": paid.pk, "amount": "5.00", "reason": "r"}, key="ticket-42")
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "succeeded"
    assert Refund.objects.count() == 1
    assert available(org_a.pk) == usd("15")
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert sum(r.amount for r in refunds.data) == 500
    # A new key is a new refund.
    assert refund(staff, {"top_up_id": paid.pk, "amount": "5.00", "reason": "r"}, key="ticket-43").status_code == 201
    assert available(org_a.pk) == usd("10")


def test_the_same_key_for_a_different_refund_is_a_conflict(staff, paid, org_a, alice, localstripe):
    assert refund(staff, {"top_up_id": paid.pk, "amount": "5.00", "reason": "r"}, key="k1").status_code == 201
    other = pay(org_a, alice, localstripe, amount="10.00")
    for body in (
        {"top_up_id": paid.pk, "amount": "6.00", "reason": "r"},
        {"top_up_id": other.pk, "amount": "5.00", "reason": "r"},
    ):
        response = refund(staff, body, key="k1")
        assert response.status_code == 409, body
        assert response.json()["error"]["code"] == "idempotency_conflict"
    assert Refund.objects.count() == 1
    assert available(org_a.pk) == usd("25")


@pytest.mark.django_db(transaction=True)
def test_the_same_refund_sent_six_times_at_once_refunds_once(org_a, alice, localstripe):
    paid = pay(org_a, alice, localstripe)
    sam = UserFactory(username="sam@example.com", is_staff=True)
    barrier = threading.Barrier(6)

    def attempt(_: int) -> tuple[int, bool]:
        try:
            barrier.wait()
            result = services.refund_create(
                top_up_id=paid.pk, amount="5.00", reason="r", actor=sam, idempotency_key="one-click"
            )
            return result.refund.pk, result.created
        finally:
            close_db_connections()

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert len({pk for pk, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * 5 + [True]
    assert available(org_a.pk) == usd("15")
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert sum(r.amount for r in refunds.data) == 500


def test_the_resume_sweep_visits_every_pending_refund_not_only_a_first_page(staff, paid, org_a, settings):
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    ids = [refund(staff, {"top_up_id": paid.pk, "amount": "2.00", "reason": "r"}).json()["id"] for _ in range(5)]
    assert set(Refund.objects.values_list("status", flat=True)) == {"pending"}
    settings.STRIPE_API_BASE = base

    assert services.refunds_resume(older_than_seconds=0, page_size=2) == 5
    assert set(Refund.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}
    refunds = stripe_client().v1.refunds.list(params={"payment_intent": paid.stripe_payment_intent_id})
    assert sum(r.amount for r in refunds.data) == 1000


def test_a_refund_event_naming_a_refund_in_other_digits_is_not_ours(staff, paid, org_a):
    body = refund(staff, {"top_up_id": paid.pk, "reason": "r"}).json()
    for n, raw in enumerate(["\u00b2", "".join(chr(0x0660 + int(d)) for d in str(body["id"]))]):
        event = {
            "id": f"evt_refund_digits_{n}",
            "object": "event",
            "type": "refund.failed",
            "data": {"object": {"id": f"re_other_{n}", "status": "failed", "metadata": {"refund_id": raw}}},
        }
        payload = json.dumps(event)
        stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
        assert services.stripe_event_process(stripe_event_id=stored.pk).status == "ignored"
    assert Refund.objects.get(pk=body["id"]).status == "succeeded"
    assert available(org_a.pk) == 0


def test_a_refund_reported_failed_twice_puts_the_credit_back_once(staff, paid, org_a):
    body = refund(staff, {"top_up_id": paid.pk, "reason": "r"}).json()
    assert available(org_a.pk) == 0
    stripe_refund = {
        "id": body["stripe_refund_id"],
        "object": "refund",
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "metadata": {"refund_id": str(body["id"])},
    }
    # Stripe announces one failure under two event types (and an older API version under a third).
    for n, event_type in enumerate(["refund.updated", "refund.failed", "charge.refund.updated"]):
        event = {"id": f"evt_refund_twice_{n}", "type": event_type, "data": {"object": stripe_refund}}
        payload = json.dumps(event)
        stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
        assert services.stripe_event_process(stripe_event_id=stored.pk).status == "processed"
    failed = Refund.objects.get(pk=body["id"])
    assert failed.status == "failed" and failed.restore_grant_id is not None
    assert available(org_a.pk) == usd("20")
    # The top-up's own grant and one that puts the credit back.
    assert Grant.objects.filter(wallet__organization_id=org_a.pk, kind="paid").count() == 2
    paid.refresh_from_db()
    assert paid.refunded_nano == 0
    assert AuditEvent.objects.filter(action="top_up.refund_failed").count() == 1
    wallet = ledger_selectors.wallet_of(organization_id=org_a.pk)
    assert wallet is not None and ledger_selectors.wallet_reconcile(wallet_id=wallet.pk) == []
