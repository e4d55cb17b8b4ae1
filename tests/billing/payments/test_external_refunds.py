"""Refunds made outside the product (in Stripe's Dashboard), over the webhook endpoint on real HTTP: the money
went back to the card, so the credit it bought leaves the wallet, once, and comes back if the refund fails.

The events are written in Stripe's shape and signed with the endpoint's secret (a refund made in Stripe's
Dashboard carries none of this product's metadata); the top-ups they name are real ones, paid at localstripe."""

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import Grant
from billing.payments.models import ExternalRefund, StripeEvent, TopUp
from billing.payments.services.refunds import refund_refundable
from tests.billing.payments.helpers import available, deliver, reconciled, spend, usd

pytestmark = pytest.mark.django_db(transaction=True)

_events = itertools.count(1)


def event(top_up: TopUp, kind: str = "created", *, refund: str = "re_dash_1", **fields: Any) -> dict[str, Any]:
    """A `refund.<kind>` event as Stripe sends it for a refund made in its Dashboard: no metadata of ours."""
    obj = {
        "id": refund,
        "object": "refund",
        "amount": 2000,
        "currency": "usd",
        "charge": "ch_paid",
        "payment_intent": top_up.stripe_payment_intent_id,
        "metadata": {},
        "reason": "requested_by_customer",
        "status": "succeeded",
        **fields,
    }
    return {
        "id": f"evt_refund_{next(_events)}",
        "object": "event",
        "type": f"refund.{kind}",
        "created": int(time.time()),
        "data": {"object": obj},
    }


def test_a_refund_made_in_stripe_takes_the_unused_credit_back_and_counts_as_refunded(webhook_url, paid, org_a):
    spend(org_a, "5.00")
    response = deliver(webhook_url, event(paid))
    assert (response.status_code, response.json()["status"]) == (200, "processed")
    booked = ExternalRefund.objects.get()
    assert (booked.top_up_id, booked.amount_nano, booked.taken_nano, booked.unrecovered_nano) == (
        paid.pk,
        usd("20"),
        usd("15"),
        usd("5"),
    )
    assert available(org_a.pk) == 0
    assert Grant.objects.get(pk=paid.grant_id).remaining_nano == 0
    paid.refresh_from_db()
    assert paid.refunded_nano == usd("20")
    assert refund_refundable(top_up=paid)[1] == 0
    assert reconciled(org_a) == []


def test_the_customers_receipt_lists_a_refund_made_in_stripe(webhook_url, paid, alice_client):
    deliver(webhook_url, event(paid, amount=700))
    page = alice_client.get(f"/billing/receipts/{paid.pk}/").content.decode()
    assert "Refund 1" in page and "7.00" in page and "Refunded" in page


def test_a_partial_refund_takes_its_amount_and_staff_may_refund_only_the_rest(webhook_url, paid, org_a):
    deliver(webhook_url, event(paid, amount=700))
    assert (ExternalRefund.objects.get().taken_nano, available(org_a.pk)) == (usd("7"), usd("13"))
    paid.refresh_from_db()
    assert paid.refunded_nano == usd("7")
    assert refund_refundable(top_up=paid) == (paid.grant_id, usd("13"))
    # A second refund in Stripe of the rest.
    deliver(webhook_url, event(paid, refund="re_dash_2", amount=1300))
    paid.refresh_from_db()
    assert (paid.refunded_nano, available(org_a.pk)) == (usd("20"), 0)
    assert reconciled(org_a) == []


def test_a_refund_still_under_way_books_nothing_until_it_succeeds(webhook_url, paid, org_a):
    response = deliver(webhook_url, event(paid, status="pending"))
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    assert not ExternalRefund.objects.exists()
    assert available(org_a.pk) == usd("20")
    deliver(webhook_url, event(paid, "updated"))
    assert (ExternalRefund.objects.get().taken_nano, available(org_a.pk)) == (usd("20"), 0)


def test_the_same_refund_reported_twenty_times_at_once_moves_credit_once(webhook_url, paid, org_a):
    created = event(paid)
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: deliver(webhook_url, created).status_code, range(20)))
    assert statuses == [200] * 20
    # Stripe also reports it under other events (created, then updated): still once.
    assert deliver(webhook_url, event(paid, "updated")).status_code == 200
    assert ExternalRefund.objects.count() == 1
    paid.refresh_from_db()
    assert (available(org_a.pk), paid.refunded_nano) == (0, usd("20"))
    assert reconciled(org_a) == []


def test_a_refund_that_fails_after_all_puts_the_credit_back_once(webhook_url, paid, org_a):
    spend(org_a, "5.00")
    deliver(webhook_url, event(paid))
    failed = event(paid, "failed", status="failed", failure_reason="expired_or_canceled_card")
    for _ in range(3):
        assert deliver(webhook_url, failed).status_code == 200
    booked = ExternalRefund.objects.get()
    assert (booked.status, booked.unrecovered_nano, available(org_a.pk)) == ("failed", 0, usd("15"))
    restored = Grant.objects.get(pk=booked.restore_grant_id)
    assert (restored.kind, restored.remaining_nano) == ("paid", usd("15"))
    paid.refresh_from_db()
    assert paid.refunded_nano == 0
    # Staff may refund the credit put back.
    assert refund_refundable(top_up=paid) == (restored.pk, usd("15"))
    assert reconciled(org_a) == []


def test_credit_held_by_a_request_in_flight_is_not_taken(webhook_url, paid, org_a):
    wallet_id = ledger_selectors.wallet_balance(organization_id=org_a.pk).wallet_id
    ledger.hold_place(wallet_id=wallet_id, amount_nano=usd("8"), idempotency_key="in-flight", actor="t")
    deliver(webhook_url, event(paid))
    booked = ExternalRefund.objects.get()
    assert (booked.taken_nano, booked.unrecovered_nano, available(org_a.pk)) == (usd("12"), usd("8"), 0)
    assert reconciled(org_a) == []


def test_refunds_of_payments_we_do_not_know_are_kept_waiting_and_move_nothing(webhook_url, paid, org_a):
    # Not ours, or ours before its payment's success arrived: kept (never dropped) until that success comes.
    response = deliver(webhook_url, event(paid, payment_intent="pi_someone_else"))
    assert (response.status_code, response.json()["status"]) == (200, "waiting")
    assert not ExternalRefund.objects.exists()
    assert available(org_a.pk) == usd("20")


@pytest.mark.parametrize("fields", [{"amount": 2001}, {"amount": 0}, {"currency": "eur"}, {"amount": "20"}])
def test_a_refund_that_does_not_match_its_payment_fails_visibly_and_moves_nothing(webhook_url, paid, org_a, fields):
    created = event(paid, **fields)
    assert deliver(webhook_url, created).status_code == 200  # acknowledged: Stripe must not retry forever
    stored = StripeEvent.objects.get(event_id=created["id"])
    assert stored.status == "failed" and "refund re_dash_1" in stored.error
    assert not ExternalRefund.objects.exists()
    assert available(org_a.pk) == usd("20")
