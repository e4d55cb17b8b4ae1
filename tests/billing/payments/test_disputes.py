"""Card disputes of paid top-ups, over the webhook endpoint on real HTTP: the credit leaves the wallet when the bank
takes the money back and returns when the money does, once however often (and in whatever order) Stripe tells us.

localstripe has no disputes, so the events are written here in Stripe's shape and signed with the endpoint's
secret; the top-ups they name are real ones, paid at localstripe."""

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import Grant
from billing.payments.models import AutoTopUp, Dispute, StripeEvent, TopUp
from tests.billing.payments.helpers import available, deliver, reconciled, spend, usd

pytestmark = pytest.mark.django_db(transaction=True)

_events = itertools.count(1)


def event(top_up: TopUp, kind: str, *, dispute: str = "dp_1", cents: int = 2000, **fields: Any) -> dict[str, Any]:
    """A `charge.dispute.<kind>` event as Stripe sends it, about `top_up`'s payment."""
    obj = {
        "id": dispute,
        "object": "dispute",
        "amount": cents,
        "currency": "usd",
        "charge": "ch_disputed",
        "payment_intent": top_up.stripe_payment_intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
        **fields,
    }
    return {
        "id": f"evt_dispute_{next(_events)}",
        "object": "event",
        "type": f"charge.dispute.{kind}",
        "created": int(time.time()),
        "data": {"object": obj},
    }


def test_an_opened_dispute_is_recorded_and_moves_no_credit(webhook_url, paid, org_a):
    response = deliver(webhook_url, event(paid, "created"))
    assert (response.status_code, response.json()["status"]) == (200, "processed")
    dispute = Dispute.objects.get()
    assert (dispute.top_up_id, dispute.amount_nano, dispute.reason, dispute.status) == (
        paid.pk,
        usd("20"),
        "fraudulent",
        "open",
    )
    assert available(org_a.pk) == usd("20")


def test_withdrawn_funds_take_the_unused_credit_back_and_record_what_was_spent(webhook_url, paid, org_a):
    spend(org_a, "5.00")
    response = deliver(webhook_url, event(paid, "funds_withdrawn"))
    assert (response.status_code, response.json()["status"]) == (200, "processed")
    dispute = Dispute.objects.get()
    assert (dispute.funds_withdrawn, dispute.taken_nano, dispute.unrecovered_nano) == (True, usd("15"), usd("5"))
    assert available(org_a.pk) == 0
    assert Grant.objects.get(pk=paid.grant_id).remaining_nano == 0
    assert reconciled(org_a) == []


def test_withdrawn_funds_turn_auto_top_up_off_with_the_reason(webhook_url, paid, org_a):
    # The card paid with is the saved card already (a new card is kept); auto top-up is turned on with it.
    AutoTopUp.objects.update_or_create(
        organization=org_a,
        defaults={
            "enabled": True,
            "threshold_nano": usd("5"),
            "amount_nano": usd("20"),
            "daily_cap_nano": usd("40"),
            "stripe_payment_method_id": "pm_card",
        },
    )
    deliver(webhook_url, event(paid, "created"))
    assert AutoTopUp.objects.get(organization=org_a).enabled  # an inquiry or a dispute alone takes no money
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    config = AutoTopUp.objects.get(organization=org_a)
    assert not config.enabled
    assert f"payment of {paid.receipt_number} was disputed" in config.disabled_reason


def test_a_partial_dispute_takes_only_its_amount(webhook_url, paid, org_a):
    deliver(webhook_url, event(paid, "funds_withdrawn", cents=700))
    assert (Dispute.objects.get().taken_nano, available(org_a.pk)) == (usd("7"), usd("13"))


def test_the_same_events_delivered_twenty_times_at_once_move_credit_once(webhook_url, paid, org_a):
    withdrawn = event(paid, "funds_withdrawn")
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: deliver(webhook_url, withdrawn).status_code, range(20)))
    assert statuses == [200] * 20
    assert available(org_a.pk) == 0
    # Another event about the same withdrawal (Stripe may send one again under a new id) changes nothing either.
    assert deliver(webhook_url, event(paid, "funds_withdrawn")).status_code == 200
    assert (Dispute.objects.get().taken_nano, available(org_a.pk)) == (usd("20"), 0)
    assert reconciled(org_a) == []


def test_reinstated_funds_put_the_credit_taken_back_once_and_a_refund_may_then_draw_on_it(webhook_url, paid, org_a):
    spend(org_a, "5.00")
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    reinstated = event(paid, "funds_reinstated", status="won")
    for _ in range(3):
        assert deliver(webhook_url, reinstated).status_code == 200
    deliver(webhook_url, event(paid, "closed", status="won"))
    dispute = Dispute.objects.get()
    assert (dispute.status, available(org_a.pk)) == ("won", usd("15"))
    restored = Grant.objects.get(pk=dispute.restore_grant_id)
    assert (restored.kind, restored.remaining_nano) == ("paid", usd("15"))
    from billing.payments.services.refunds import refund_refundable

    assert refund_refundable(top_up=paid) == (restored.pk, usd("15"))
    assert reconciled(org_a) == []


@pytest.mark.parametrize("first", ["funds_reinstated", "closed"])
def test_a_dispute_known_to_be_won_before_its_withdrawal_arrives_ends_as_in_stripes_order(
    webhook_url, paid, org_a, first
):
    # Stripe does not promise the order of events, and a failed one is processed again later. The withdrawal is
    # taken when it arrives and put back by the reinstatement, whichever came first: the same end state as in
    # Stripe's order (withdrawn, reinstated, closed).
    deliver(webhook_url, event(paid, first, status="won"))
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    # A reinstatement that came first waited for the withdrawal and was applied with it; after a closing, the
    # money is out until its reinstatement arrives.
    assert available(org_a.pk) == (usd("20") if first == "funds_reinstated" else 0)
    assert deliver(webhook_url, event(paid, "funds_reinstated", status="won")).status_code == 200
    assert deliver(webhook_url, event(paid, "closed", status="won")).status_code == 200
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.funds_withdrawn, dispute.taken_nano, available(org_a.pk)) == (
        "won",
        True,
        usd("20"),
        usd("20"),
    )
    assert Grant.objects.get(pk=dispute.restore_grant_id).remaining_nano == usd("20")
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert reconciled(org_a) == []


def test_a_withdrawal_takes_from_every_grant_of_the_top_up(webhook_url, paid, org_a):
    # A first, partial dispute won leaves the credit on two grants: 15.00 on the top-up's, 5.00 on the restored one.
    deliver(webhook_url, event(paid, "funds_withdrawn", dispute="dp_first", cents=500))
    deliver(webhook_url, event(paid, "funds_reinstated", dispute="dp_first", cents=500, status="won"))
    restored = Grant.objects.get(pk=Dispute.objects.get(stripe_dispute_id="dp_first").restore_grant_id)
    assert (Grant.objects.get(pk=paid.grant_id).remaining_nano, restored.remaining_nano) == (usd("15"), usd("5"))
    deliver(webhook_url, event(paid, "funds_withdrawn", dispute="dp_second"))
    second = Dispute.objects.get(stripe_dispute_id="dp_second")
    assert (second.taken_nano, second.unrecovered_nano, available(org_a.pk)) == (usd("20"), 0, 0)
    restored.refresh_from_db()
    assert (Grant.objects.get(pk=paid.grant_id).remaining_nano, restored.remaining_nano) == (0, 0)
    assert reconciled(org_a) == []


def test_a_lost_dispute_keeps_the_credit_out(webhook_url, paid, org_a):
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    deliver(webhook_url, event(paid, "closed", status="lost"))
    assert (Dispute.objects.get().status, available(org_a.pk)) == ("lost", 0)


def test_funds_withdrawn_before_the_dispute_was_announced_still_count_once(webhook_url, paid, org_a):
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    deliver(webhook_url, event(paid, "created"))
    assert (Dispute.objects.count(), available(org_a.pk)) == (1, 0)


def test_credit_held_by_a_request_in_flight_is_not_taken(webhook_url, paid, org_a):
    wallet_id = ledger_selectors.wallet_balance(organization_id=org_a.pk).wallet_id
    ledger.hold_place(wallet_id=wallet_id, amount_nano=usd("8"), idempotency_key="in-flight", actor="t")
    deliver(webhook_url, event(paid, "funds_withdrawn"))
    dispute = Dispute.objects.get()
    assert (dispute.taken_nano, dispute.unrecovered_nano, available(org_a.pk)) == (usd("12"), usd("8"), 0)
    assert reconciled(org_a) == []


def test_disputes_of_payments_we_do_not_know_are_kept_waiting_and_move_nothing(webhook_url, paid, org_a):
    # Not ours, or ours before its payment's success arrived: kept (never dropped) until that success comes.
    stranger = event(paid, "funds_withdrawn", payment_intent="pi_someone_else")
    response = deliver(webhook_url, stranger)
    assert (response.status_code, response.json()["status"]) == (200, "waiting")
    assert not Dispute.objects.exists()
    assert available(org_a.pk) == usd("20")


@pytest.mark.parametrize("fields", [{"amount": 2001}, {"amount": 0}, {"currency": "eur"}, {"amount": "20"}])
def test_a_dispute_that_does_not_match_its_payment_fails_visibly_and_moves_nothing(webhook_url, paid, org_a, fields):
    withdrawn = event(paid, "funds_withdrawn", **fields)
    assert deliver(webhook_url, withdrawn).status_code == 200  # acknowledged: Stripe must not retry forever
    stored = StripeEvent.objects.get(event_id=withdrawn["id"])
    assert stored.status == "failed" and "dispute dp_1" in stored.error
    assert not Dispute.objects.exists()
    assert available(org_a.pk) == usd("20")
