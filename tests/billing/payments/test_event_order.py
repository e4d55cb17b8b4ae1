"""Stripe does not promise the order of its events: whatever order a payment's success, a refund made in Stripe, a
dispute's withdrawal and its reinstatement arrive in, and however often each is delivered again, the end state is the
one Stripe's own order gives. An event that cannot be applied yet is kept `waiting` and applied when it can.

Over real HTTP to the webhook endpoint, with events signed as Stripe signs them: the payment's success is the genuine
event localstripe made for a real top-up; the refund and dispute events (localstripe has neither) are written here in
Stripe's shape about that top-up's PaymentIntent."""

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.ledger.models import Grant
from billing.payments import services
from billing.payments.models import Dispute, ExternalRefund, StripeEvent, TopUp
from tests.accounts.factories import UserFactory
from tests.billing.payments.helpers import (
    available,
    charge,
    deliver,
    reconciled,
    succeeded_event_json,
    usd,
)

pytestmark = pytest.mark.django_db(transaction=True)

_events = itertools.count(1)


def _event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_order_{next(_events)}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def refund_event(payment_intent: str, *, refund: str = "re_dash_1", cents: int = 500) -> dict[str, Any]:
    """`refund.created` of a refund made in Stripe's Dashboard (no metadata of ours), already succeeded."""
    return _event(
        "refund.created",
        {
            "id": refund,
            "object": "refund",
            "amount": cents,
            "currency": "usd",
            "charge": "ch_paid",
            "payment_intent": payment_intent,
            "metadata": {},
            "status": "succeeded",
        },
    )


def dispute_event(payment_intent: str, kind: str, *, cents: int = 1500, status: str) -> dict[str, Any]:
    return _event(
        f"charge.dispute.{kind}",
        {
            "id": "dp_order",
            "object": "dispute",
            "amount": cents,
            "currency": "usd",
            "charge": "ch_paid",
            "payment_intent": payment_intent,
            "reason": "fraudulent",
            "status": status,
        },
    )


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(UserFactory(username="sam@example.com", is_staff=True))
    return client


@pytest.fixture
def unpaid(org_a, alice, localstripe) -> tuple[TopUp, dict[str, dict[str, Any]]]:
    """A 20.00 top-up charged at localstripe whose success was not delivered yet, and the four events of its
    payment's life: success, a 5.00 refund made in Stripe, a 15.00 dispute's withdrawal and its reinstatement."""
    top_up = charge(org_a, alice, localstripe)
    pi = str(top_up.stripe_payment_intent_id)
    return top_up, {
        "success": json.loads(succeeded_event_json(top_up)),
        "refund": refund_event(pi),
        "withdrawn": dispute_event(pi, "funds_withdrawn", status="needs_response"),
        "reinstated": dispute_event(pi, "funds_reinstated", status="won"),
    }


def end_state(top_up: TopUp, staff: Client) -> dict[str, Any]:
    """Everything a person could look at after the events: wallet, grants, refund and dispute rows, what staff see."""
    top_up.refresh_from_db()
    [listed] = staff.get(f"/api/staff/top-ups/?organization_id={top_up.organization_id}").json()["results"]
    dispute = Dispute.objects.get()
    return {
        "available": available(top_up.organization_id),
        "top_up": (top_up.status, top_up.refunded_nano),
        "staff_api": (listed["refunded"], listed["refundable"]),
        "grants": sorted(
            Grant.objects.filter(wallet__organization_id=top_up.organization_id).values_list(
                "kind", "amount_nano", "remaining_nano"
            )
        ),
        "external_refunds": list(ExternalRefund.objects.values_list("amount_nano", "taken_nano", "status")),
        "dispute": (
            dispute.status,
            dispute.funds_withdrawn,
            dispute.taken_nano,
            Grant.objects.get(pk=dispute.restore_grant_id).amount_nano if dispute.restore_grant_id else None,
        ),
        "events": sorted(StripeEvent.objects.values_list("type", "status")),
        "reconciled": reconciled(top_up.organization),
    }


# The state Stripe's own order (success, refund, withdrawal, reinstatement) leaves.
STRIPE_ORDER_STATE = {
    "available": usd("15"),
    "top_up": ("succeeded", usd("5")),
    "staff_api": ("5.00", "15.00"),
    "grants": [("paid", usd("15"), usd("15")), ("paid", usd("20"), 0)],
    "external_refunds": [(usd("5"), usd("5"), "succeeded")],
    "dispute": ("won", True, usd("15"), usd("15")),
    "events": [
        ("charge.dispute.funds_reinstated", "processed"),
        ("charge.dispute.funds_withdrawn", "processed"),
        ("payment_intent.succeeded", "processed"),
        ("refund.created", "processed"),
    ],
    "reconciled": [],
}


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["success", "refund", "withdrawn", "reinstated"])), ids="-".join
)
def test_every_order_of_success_refund_and_dispute_ends_in_the_same_state(webhook_url, unpaid, staff, order):
    top_up, events = unpaid
    for name in order:
        assert deliver(webhook_url, events[name]).status_code == 200, name
    assert end_state(top_up, staff) == STRIPE_ORDER_STATE

    # Stripe delivers again (the same events, in another order), and the retry sweep runs: nothing changes.
    for name in reversed(order):
        response = deliver(webhook_url, events[name])
        assert (response.status_code, response.json()["status"]) == (200, "processed"), name
    assert services.stripe_events_retry() == []
    assert end_state(top_up, staff) == STRIPE_ORDER_STATE


@pytest.mark.parametrize("order", [("refund", "success"), ("withdrawn", "success")])
def test_an_event_before_the_payments_success_waits_and_is_applied_with_it(webhook_url, unpaid, org_a, order):
    top_up, events = unpaid
    early, _ = order
    response = deliver(webhook_url, events[early])
    assert (response.status_code, response.json()["status"]) == (200, "waiting")
    stored = StripeEvent.objects.get(event_id=events[early]["id"])
    assert stored.payment_intent_id == top_up.stripe_payment_intent_id
    assert "payment_intent.succeeded" in stored.error
    # Delivered again while it waits: still waiting, nothing moved.
    assert deliver(webhook_url, events[early]).json()["status"] == "waiting"
    assert available(org_a.pk) == 0

    assert deliver(webhook_url, events["success"]).json()["status"] == "processed"
    stored.refresh_from_db()
    assert (stored.status, stored.error) == ("processed", "")
    assert available(org_a.pk) == (usd("15") if early == "refund" else usd("5"))
    assert reconciled(org_a) == []


def test_a_reinstatement_before_its_withdrawal_waits_for_it(webhook_url, unpaid, org_a):
    _top_up, events = unpaid
    deliver(webhook_url, events["success"])
    response = deliver(webhook_url, events["reinstated"])
    assert (response.status_code, response.json()["status"]) == (200, "waiting")
    assert "funds_withdrawn" in StripeEvent.objects.get(event_id=events["reinstated"]["id"]).error
    assert available(org_a.pk) == usd("20")
    deliver(webhook_url, events["withdrawn"])
    assert StripeEvent.objects.get(event_id=events["reinstated"]["id"]).status == "processed"
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.taken_nano, available(org_a.pk)) == ("won", usd("15"), usd("20"))


def test_success_and_an_early_refund_delivered_many_times_at_once_end_in_the_same_state(webhook_url, unpaid, staff):
    top_up, events = unpaid
    deliver(webhook_url, events["withdrawn"])
    deliver(webhook_url, events["reinstated"])
    deliveries = [events["refund"], events["success"]] * 6
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda event: deliver(webhook_url, event), deliveries))
    assert {response.status_code for response in responses} == {200}
    # A delivery that lost the race may still have answered "waiting"; the winner applied it after both committed.
    assert end_state(top_up, staff) == STRIPE_ORDER_STATE


def test_refunds_larger_than_what_is_left_take_what_is_left_and_record_the_rest(webhook_url, unpaid, org_a, staff):
    top_up, events = unpaid
    pi = str(top_up.stripe_payment_intent_id)
    # Two refunds made in Stripe, 15.00 and 10.00 of a 20.00 payment, both before its success.
    deliver(webhook_url, refund_event(pi, refund="re_big", cents=1500))
    deliver(webhook_url, refund_event(pi, refund="re_more", cents=1000))
    deliver(webhook_url, events["success"])
    booked = ExternalRefund.objects.all()
    assert sum(r.taken_nano for r in booked) == usd("20")
    assert sum(r.unrecovered_nano for r in booked) == usd("5")
    assert available(org_a.pk) == 0
    top_up.refresh_from_db()
    assert top_up.refunded_nano == usd("20")  # never more than the payment
    [listed] = staff.get(f"/api/staff/top-ups/?organization_id={org_a.pk}").json()["results"]
    assert (listed["refunded"], listed["refundable"]) == ("20.00", "0.00")
    assert reconciled(org_a) == []


def test_a_refund_of_a_payment_we_never_saw_is_kept_waiting_and_shown_to_staff(webhook_url, org_a, db):
    unknown = refund_event("pi_never_seen", refund="re_stranger", cents=700)
    response = deliver(webhook_url, unknown)
    assert (response.status_code, response.json()["status"]) == (200, "waiting")
    stored = StripeEvent.objects.get(event_id=unknown["id"])
    assert (stored.status, stored.payment_intent_id) == ("waiting", "pi_never_seen")
    assert json.loads(stored.payload) == unknown
    assert available(org_a.pk) == 0
    # The retry sweep leaves it waiting (its places are for failed events); it is never dropped as ignored.
    assert services.stripe_events_retry() == []
    assert StripeEvent.objects.get(event_id=unknown["id"]).status == "waiting"

    staff = Client()
    staff.force_login(get_user_model().objects.create_user("root", "root@example.com", "pw", is_staff=True))
    listed = staff.get("/api/staff/stripe-events/?status=waiting").json()["results"]
    assert [(e["event_id"], e["payment_intent_id"], e["status"]) for e in listed] == [
        (unknown["id"], "pi_never_seen", "waiting")
    ]


def test_the_reconcile_sweep_applies_what_waited_for_a_lost_success(webhook_url, unpaid, org_a, staff):
    top_up, events = unpaid
    deliver(webhook_url, events["refund"])
    # payment_intent.succeeded never arrives: the sweep reads the PaymentIntent from Stripe and credits it.
    counts = services.topups_reconcile(older_than_seconds=0)
    assert counts["settled"] == 1
    assert StripeEvent.objects.get(event_id=events["refund"]["id"]).status == "processed"
    assert available(org_a.pk) == usd("15")
    top_up.refresh_from_db()
    assert top_up.refunded_nano == usd("5")
    assert reconciled(org_a) == []


def test_refunds_ignored_before_this_fix_are_made_waiting_and_applied_by_the_retry_sweep(webhook_url, unpaid, org_a):
    """What the migration does for events an earlier version stored as `ignored` (final) and so never applied."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("billing.payments.migrations.0006_ignored_refund_and_dispute_events_wait")
    top_up, events = unpaid
    deliver(webhook_url, events["success"])
    payload = json.dumps(events["refund"])
    old = StripeEvent.objects.create(
        event_id=events["refund"]["id"],
        type="refund.created",
        payload=payload,
        status="ignored",
        error="not a refund of a paid top-up of this product, or one still under way",
        attempts=1,
        processed_at=top_up.created_at,
    )
    unrelated = StripeEvent.objects.create(
        event_id="evt_other", type="customer.created", payload="{}", status="ignored", processed_at=top_up.created_at
    )
    migration.forward(apps, None)
    old.refresh_from_db()
    assert (old.status, old.payment_intent_id, old.processed_at) == ("waiting", top_up.stripe_payment_intent_id, None)
    assert StripeEvent.objects.get(pk=unrelated.pk).status == "ignored"

    services.stripe_events_retry()
    old.refresh_from_db()
    assert old.status == "processed"
    assert available(org_a.pk) == usd("15")
    assert reconciled(org_a) == []


def test_an_early_refund_whose_own_delivery_is_still_deciding_is_applied_once_it_has_decided(
    webhook_url, unpaid, org_a
):
    """The race: the refund's own delivery judged the payment unpaid and holds the event's row while it writes
    `waiting`; the success commits meanwhile. The success's delivery skips the held row, then, once both have
    committed, applies it."""
    import threading

    from django.db import transaction

    from tests.billing.payments.helpers import close_db_connections, stripe_signature

    _top_up, events = unpaid
    payload = json.dumps(events["refund"])
    stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
    held, release = threading.Event(), threading.Event()

    def refund_delivery_deciding() -> None:
        try:
            with transaction.atomic():
                StripeEvent.objects.select_for_update().get(pk=stored.pk)
                held.set()
                release.wait(timeout=30)
                StripeEvent.objects.filter(pk=stored.pk).update(status="waiting", error="waits", attempts=1)
        finally:
            close_db_connections()

    deciding = threading.Thread(target=refund_delivery_deciding)
    deciding.start()
    assert held.wait(timeout=10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        success = pool.submit(deliver, webhook_url, events["success"])
        time.sleep(1.5)  # the success is granted and committed; its delivery now waits for the held row
        assert available(org_a.pk) == usd("20")
        release.set()
        assert success.result(timeout=30).json()["status"] == "processed"
    deciding.join(timeout=10)
    assert StripeEvent.objects.get(pk=stored.pk).status == "processed"
    assert available(org_a.pk) == usd("15")
    assert reconciled(org_a) == []


def test_the_reported_case_a_full_refund_before_the_success_leaves_nothing_to_keep(
    webhook_url, org_a, alice, localstripe, staff
):
    """A 15.00 top-up whose success was not delivered; a refund of all of it made in Stripe; then the success."""
    top_up = charge(org_a, alice, localstripe, "15.00")
    assert deliver(webhook_url, refund_event(str(top_up.stripe_payment_intent_id), cents=1500)).status_code == 200
    assert deliver(webhook_url, succeeded_event_json(top_up)).json()["status"] == "processed"
    assert available(org_a.pk) == 0
    [listed] = staff.get(f"/api/staff/top-ups/?organization_id={org_a.pk}").json()["results"]
    assert (listed["status"], listed["refunded"], listed["refundable"]) == ("succeeded", "15.00", "0.00")
    assert reconciled(org_a) == []
