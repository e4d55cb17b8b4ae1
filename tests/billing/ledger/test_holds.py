"""Holds: place, capture, release, expiry, replays and refusals, through the synchronous services."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from api.errors import http_of
from billing.ledger import services
from billing.ledger.errors import HoldNotOpen, IdempotencyConflict, InsufficientCredit, NotFound
from billing.ledger.models import Account, Grant, GrantDraw, Hold, JournalEntry, JournalTransaction
from core.errors import ApplicationError
from tests.billing.ledger.conftest import balances, fund, usd


def place(wallet, amount: str, key: str = "req-1", **options):
    return services.hold_place(
        wallet_id=wallet.pk, amount_nano=usd(amount), idempotency_key=key, actor="test", **options
    )


def legs(transaction_id: int) -> dict[str, int]:
    return dict(JournalEntry.objects.filter(transaction_id=transaction_id).values_list("account", "amount_nano"))


def test_place_moves_credit_from_available_to_held(org, wallet):
    fund(org, "10.00")
    placed = place(wallet, "2.50")
    assert (placed.available_nano, placed.held_nano) == (usd("7.50"), usd("2.50"))
    assert balances(wallet) == (usd("7.50"), usd("2.50"))
    hold = Hold.objects.get(pk=placed.hold_id)
    assert (hold.status, hold.amount_nano, hold.idempotency_key) == ("open", usd("2.50"), "req-1")
    txn = JournalTransaction.objects.get(idempotency_key=f"hold:{hold.pk}:place")
    assert legs(txn.pk) == {Account.AVAILABLE: -usd("2.50"), Account.HELD: usd("2.50")}


def test_capture_charges_the_actual_cost_and_releases_the_rest(org, wallet):
    grant_id = fund(org, "10.00")
    placed = place(wallet, "2.50")
    settled = services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("0.40"), actor="test")
    assert (settled.status, settled.captured_nano, settled.released_nano) == ("captured", usd("0.40"), usd("2.10"))
    assert balances(wallet) == (usd("9.60"), 0)
    assert legs(settled.transaction_id) == {
        Account.HELD: -usd("2.50"),
        Account.SPENT: usd("0.40"),
        Account.AVAILABLE: usd("2.10"),
    }
    draws = list(GrantDraw.objects.filter(transaction_id=settled.transaction_id).values_list("grant_id", "amount_nano"))
    assert draws == [(grant_id, usd("0.40"))]


def test_capture_of_the_whole_hold_and_of_nothing(org, wallet):
    fund(org, "10.00")
    whole = place(wallet, "1.00", key="a")
    services.hold_capture(hold_id=whole.hold_id, amount_nano=usd("1.00"), actor="test")
    nothing = place(wallet, "1.00", key="b")
    settled = services.hold_capture(hold_id=nothing.hold_id, amount_nano=0, actor="test")
    assert settled.captured_nano == 0
    assert not GrantDraw.objects.filter(transaction_id=settled.transaction_id).exists()
    assert balances(wallet) == (usd("9.00"), 0)


def test_release_returns_everything(org, wallet):
    fund(org, "10.00")
    placed = place(wallet, "3.00")
    settled = services.hold_release(hold_id=placed.hold_id, actor="test", reason="upstream failed")
    assert settled.status == "released"
    assert balances(wallet) == (usd("10.00"), 0)
    assert legs(settled.transaction_id) == {Account.HELD: -usd("3.00"), Account.AVAILABLE: usd("3.00")}


def test_a_hold_the_balance_cannot_cover_is_refused_and_writes_nothing(org, wallet):
    fund(org, "1.00")
    with pytest.raises(InsufficientCredit) as refused:
        place(wallet, "1.000000001")
    assert http_of(refused.value)[0] == 402
    assert "1.00 USD available" in refused.value.message
    assert refused.value.spendable_nano == usd("1.00")
    assert not Hold.objects.exists()
    assert balances(wallet) == (usd("1.00"), 0)
    place(wallet, "1.00")  # exactly the balance is fine
    assert balances(wallet) == (0, usd("1.00"))


def test_overdraft_lets_holds_go_below_zero_up_to_the_limit(org, wallet):
    fund(org, "1.00")
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("2.00"), actor="staff")
    placed = place(wallet, "3.00")
    with pytest.raises(InsufficientCredit):
        place(wallet, "0.01", key="one-cent-too-far")
    settled = services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("2.50"), actor="test")
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.unfunded_nano) == (-usd("1.50"), usd("1.50"))
    draws = sorted(
        GrantDraw.objects.filter(transaction_id=settled.transaction_id).values_list("amount_nano", flat=True)
    )
    assert draws == [usd("1.00"), usd("1.50")]  # the grant, then what nobody paid for yet
    # The next grant pays what is owed first.
    new_grant = fund(org, "5.00")
    wallet.refresh_from_db()
    assert (wallet.available_nano, wallet.unfunded_nano) == (usd("3.50"), 0)
    assert Grant.objects.get(pk=new_grant).remaining_nano == usd("3.50")


def test_placing_with_the_same_key_returns_the_same_hold(org, wallet):
    fund(org, "10.00")
    first = place(wallet, "2.00")
    again = place(wallet, "2.00")
    assert (again.hold_id, again.replayed, first.replayed) == (first.hold_id, True, False)
    assert balances(wallet) == (usd("8.00"), usd("2.00"))
    with pytest.raises(IdempotencyConflict):
        place(wallet, "3.00")
    assert Hold.objects.count() == 1


def test_settling_twice_applies_once(org, wallet):
    fund(org, "10.00")
    placed = place(wallet, "2.00")
    first = services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("1.00"), actor="test")
    again = services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("1.00"), actor="test")
    assert (again.replayed, again.transaction_id, again.captured_nano) == (True, first.transaction_id, usd("1.00"))
    with pytest.raises(HoldNotOpen, match=r"already captured for 1\.00"):
        services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("1.50"), actor="test")
    with pytest.raises(HoldNotOpen):
        services.hold_release(hold_id=placed.hold_id, actor="test")
    assert balances(wallet) == (usd("9.00"), 0)
    assert GrantDraw.objects.count() == 1


def test_capture_beyond_the_hold_is_refused(org, wallet):
    fund(org, "10.00")
    placed = place(wallet, "2.00")
    with pytest.raises(ApplicationError, match=r"the hold is only 2\.00") as refused:
        services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("2.01"), actor="test")
    assert refused.value.code == "capture_exceeds_hold"
    assert Hold.objects.get().status == "open"
    assert balances(wallet) == (usd("8.00"), usd("2.00"))


def test_unknown_ids_are_not_found(org, wallet):
    with pytest.raises(NotFound):
        services.hold_capture(hold_id=987654, amount_nano=1, actor="test")
    with pytest.raises(NotFound):
        services.hold_place(wallet_id=987654, amount_nano=1, idempotency_key="x", actor="test")


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "1", 10**30])
def test_bad_amounts_are_refused(org, wallet, amount):
    with pytest.raises(ApplicationError):
        services.hold_place(wallet_id=wallet.pk, amount_nano=amount, idempotency_key="x", actor="test")
    assert not Hold.objects.exists()


def test_the_sweeper_expires_holds_past_their_deadline(org, wallet):
    fund(org, "10.00")
    stale = place(wallet, "2.00", key="stale", ttl_seconds=60)
    fresh = place(wallet, "1.00", key="fresh", ttl_seconds=3600)
    assert services.holds_expire() == 0
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert services.holds_expire() == 1
        assert services.holds_expire() == 0
    assert Hold.objects.get(pk=stale.hold_id).status == "expired"
    assert Hold.objects.get(pk=fresh.hold_id).status == "open"
    assert balances(wallet) == (usd("9.00"), usd("1.00"))
    # The request comes back late: its capture is refused, a release is the same outcome and is accepted.
    with pytest.raises(HoldNotOpen, match="already expired"):
        services.hold_capture(hold_id=stale.hold_id, amount_nano=usd("1.00"), actor="test")
    assert services.hold_release(hold_id=stale.hold_id, actor="test").replayed
    assert JournalTransaction.objects.filter(kind="expiry").count() == 1


def test_a_replayed_hold_is_returned_even_when_the_wallet_is_now_short(org, wallet):
    fund(org, "1.00")
    first = place(wallet, "1.00")
    again = place(wallet, "1.00")
    assert (again.hold_id, again.replayed) == (first.hold_id, True)
    with pytest.raises(IdempotencyConflict):
        place(wallet, "2.00")
