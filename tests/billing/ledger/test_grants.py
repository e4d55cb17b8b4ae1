"""Grants: credit in, consumption order, expiry to breakage, reversal; and direct debits."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import AuditEvent
from billing.ledger import selectors, services
from billing.ledger.errors import IdempotencyConflict, InsufficientCredit, NotFound
from billing.ledger.models import Account, Grant, GrantDraw, JournalEntry, JournalTransaction
from core.errors import ApplicationError
from tests.billing.ledger.conftest import balances, fund, usd

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def legs(txn: JournalTransaction) -> dict[str, int]:
    return dict(JournalEntry.objects.filter(transaction=txn).values_list("account", "amount_nano"))


def test_a_grant_books_funding_into_available(org, wallet):
    result = services.grant_create(
        organization_id=org.pk,
        kind="promotional",
        amount_nano=usd("5.00"),
        idempotency_key="welcome",
        actor="staff@example.com",
        reason="welcome credit",
    )
    assert result.created
    assert balances(wallet) == (usd("5.00"), 0)
    assert legs(result.grant.transaction) == {Account.FUNDING_PROMOTIONAL: -usd("5.00"), Account.AVAILABLE: usd("5.00")}
    assert (result.grant.transaction.actor, result.grant.transaction.reason) == ("staff@example.com", "welcome credit")


def test_a_replayed_grant_applies_once_and_a_different_one_under_the_same_key_conflicts(org, wallet):
    first = services.grant_create(
        organization_id=org.pk, kind="paid", amount_nano=usd("5.00"), idempotency_key="pi_1", actor="t"
    )
    again = services.grant_create(
        organization_id=org.pk, kind="paid", amount_nano=usd("5.00"), idempotency_key="pi_1", actor="t"
    )
    assert (again.grant.pk, again.created) == (first.grant.pk, False)
    with pytest.raises(IdempotencyConflict):
        services.grant_create(
            organization_id=org.pk, kind="paid", amount_nano=usd("6.00"), idempotency_key="pi_1", actor="t"
        )
    assert balances(wallet) == (usd("5.00"), 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount_nano", 0),
        ("amount_nano", -5),
        ("amount_nano", 2.5),
        ("amount_nano", "5"),
        ("amount_nano", 10**19),
        ("kind", "free-money"),
        ("idempotency_key", ""),
        ("idempotency_key", "k" * 201),
        ("expires_at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("expires_at", datetime(2099, 1, 1)),  # naive
    ],
)
def test_bad_grants_are_refused_and_write_nothing(org, field, value):
    arguments = {"organization_id": org.pk, "kind": "paid", "amount_nano": usd("1"), "idempotency_key": "k"}
    with pytest.raises(ApplicationError):
        services.grant_create(**(arguments | {field: value}), actor="t")
    assert not JournalTransaction.objects.exists()


def test_a_grant_to_an_unknown_organization_is_not_found(db):
    with pytest.raises(NotFound):
        services.grant_create(organization_id=424242, kind="paid", amount_nano=1, idempotency_key="k", actor="t")


def test_charges_draw_from_grants_in_the_stated_order(org, wallet):
    """Plan allowance first, then earliest expiry, promotional before refund before paid, oldest first."""
    with time_machine.travel(T0, tick=False):
        paid_forever = fund(org, "1.00", kind="paid")
        promo_forever = fund(org, "1.00", kind="promotional")
        paid_5_days = fund(org, "1.00", kind="paid", expires_at=T0 + timedelta(days=5))
        promo_10_days = fund(org, "1.00", kind="promotional", expires_at=T0 + timedelta(days=10))
        paid_10_days = fund(org, "1.00", kind="paid", expires_at=T0 + timedelta(days=10))
        refund_forever = fund(org, "1.00", kind="refund")
        allowance = fund(org, "1.00", kind="plan_allowance", expires_at=T0 + timedelta(days=30))
        debit = services.wallet_debit(organization_id=org.pk, amount_nano=usd("6.50"), idempotency_key="d", actor="t")
    drawn = list(GrantDraw.objects.filter(transaction=debit).order_by("id").values_list("grant_id", "amount_nano"))
    assert drawn == [
        (allowance, usd("1.00")),
        (paid_5_days, usd("1.00")),
        (promo_10_days, usd("1.00")),
        (paid_10_days, usd("1.00")),
        (promo_forever, usd("1.00")),
        (refund_forever, usd("1.00")),
        (paid_forever, usd("0.50")),
    ]
    assert Grant.objects.get(pk=paid_forever).remaining_nano == usd("0.50")


def test_expired_credit_goes_to_breakage_once(org, wallet):
    with time_machine.travel(T0, tick=False):
        expiring = fund(org, "3.00", kind="promotional", expires_at=T0 + timedelta(days=1))
        fund(org, "2.00", kind="paid")
        services.wallet_debit(organization_id=org.pk, amount_nano=usd("1.00"), idempotency_key="d", actor="t")
    assert services.grants_expire(now=T0 + timedelta(hours=23)) == 0
    assert services.grants_expire(now=T0 + timedelta(days=1)) == usd("2.00")
    assert services.grants_expire(now=T0 + timedelta(days=2)) == 0
    assert Grant.objects.get(pk=expiring).remaining_nano == 0
    assert balances(wallet) == (usd("2.00"), 0)
    breakage = JournalTransaction.objects.get(kind="grant_expiry")
    assert legs(breakage) == {Account.AVAILABLE: -usd("2.00"), Account.BREAKAGE: usd("2.00")}


def test_credit_held_by_requests_in_flight_expires_once_they_settle(org, wallet):
    """A hold reserved the credit while it was valid: its capture may use it; what it releases expires later."""
    with time_machine.travel(T0, tick=False):
        expiring = fund(org, "3.00", kind="promotional", expires_at=T0 + timedelta(hours=1))
        placed = services.hold_place(wallet_id=wallet.pk, amount_nano=usd("2.00"), idempotency_key="r", actor="t")
    assert services.grants_expire(now=T0 + timedelta(hours=2)) == usd("1.00")  # only what is not held
    assert balances(wallet) == (0, usd("2.00"))
    services.hold_capture(hold_id=placed.hold_id, amount_nano=usd("0.50"), actor="t")
    assert Grant.objects.get(pk=expiring).remaining_nano == usd("1.50")
    assert services.grants_expire(now=T0 + timedelta(hours=3)) == usd("1.50")
    assert balances(wallet) == (0, 0)
    assert Grant.objects.get(pk=expiring).remaining_nano == 0


def test_balance_reports_credit_expiring_within_30_days(org, wallet):
    now = timezone.now()
    fund(org, "1.00", kind="promotional", expires_at=now + timedelta(days=10))
    fund(org, "2.00", kind="promotional", expires_at=now + timedelta(days=40))
    fund(org, "4.00")
    balance = selectors.wallet_balance(organization_id=org.pk)
    assert (balance.available_nano, balance.expiring_soon_nano) == (usd("7.00"), usd("1.00"))
    assert balance.next_expiry_at == now + timedelta(days=10)


def test_reversing_unused_paid_credit(org, wallet):
    grant_id = fund(org, "10.00")
    services.wallet_debit(organization_id=org.pk, amount_nano=usd("4.00"), idempotency_key="d", actor="t")
    with pytest.raises(ApplicationError, match=r"only 6\.00 of this grant is unused"):
        services.grant_reverse(grant_id=grant_id, amount_nano=usd("7.00"), idempotency_key="r", actor="t", reason="x")
    first = services.grant_reverse(
        grant_id=grant_id, amount_nano=usd("6.00"), idempotency_key="r", actor="t", reason="refund", cash_refund=True
    )
    again = services.grant_reverse(
        grant_id=grant_id, amount_nano=usd("6.00"), idempotency_key="r", actor="t", reason="refund", cash_refund=True
    )
    txn = first.transaction
    assert (first.created, again.created, again.transaction.pk) == (True, False, txn.pk)
    assert legs(txn) == {Account.AVAILABLE: -usd("6.00"), Account.REFUNDED: usd("6.00")}
    assert balances(wallet) == (0, 0)


def test_credit_held_in_flight_cannot_be_reversed(org, wallet):
    grant_id = fund(org, "10.00")
    services.hold_place(wallet_id=wallet.pk, amount_nano=usd("8.00"), idempotency_key="h", actor="t")
    with pytest.raises(ApplicationError, match="held by requests in flight") as refused:
        services.grant_reverse(grant_id=grant_id, amount_nano=usd("5.00"), idempotency_key="r", actor="t", reason="x")
    assert refused.value.code == "credit_held"


def test_a_debit_the_balance_cannot_cover_is_refused(org, wallet):
    fund(org, "1.00")
    with pytest.raises(InsufficientCredit):
        services.wallet_debit(organization_id=org.pk, amount_nano=usd("1.01"), idempotency_key="d", actor="t")
    assert not JournalTransaction.objects.filter(kind="debit").exists()
    first = services.wallet_debit(
        organization_id=org.pk, amount_nano=usd("0.60"), idempotency_key="d", actor="t", category="plan_fee"
    )
    again = services.wallet_debit(organization_id=org.pk, amount_nano=usd("0.60"), idempotency_key="d", actor="t")
    assert (again.pk, first.category) == (first.pk, "plan_fee")
    with pytest.raises(IdempotencyConflict):
        services.wallet_debit(organization_id=org.pk, amount_nano=usd("0.10"), idempotency_key="d", actor="t")
    assert balances(wallet) == (usd("0.40"), 0)


def test_overdraft_limit_cannot_go_below_what_is_owed(org, wallet, alice):
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor=alice)
    services.wallet_debit(organization_id=org.pk, amount_nano=usd("3.00"), idempotency_key="d", actor="t")
    with pytest.raises(ApplicationError, match=r"already owes 3\.00"):
        services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("2.00"), actor=alice)
    services.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("3.00"), actor=alice)
    events = AuditEvent.objects.filter(action="wallet.overdraft_set").order_by("id")
    assert [e.detail["new"] for e in events] == ["5.00", "3.00"]
    assert events[0].actor == alice


def test_a_correction_books_credit_back_to_the_grants_funding_account(org, wallet):
    """A correction undoes the grant (back to where it came from); a cash refund is money out: never confused."""
    grant_id = fund(org, "10.00", kind="promotional")
    correction = services.grant_reverse(
        grant_id=grant_id, amount_nano=usd("3.00"), idempotency_key="same", actor="t", reason="granted by mistake"
    )
    assert (correction.created, correction.transaction.kind) == (True, "adjustment")
    assert legs(correction.transaction) == {Account.AVAILABLE: -usd("3.00"), Account.FUNDING_PROMOTIONAL: usd("3.00")}
    # The same caller key for a cash refund is another operation, not a replay of the correction.
    refund = services.grant_reverse(
        grant_id=grant_id, amount_nano=usd("3.00"), idempotency_key="same", actor="t", reason="x", cash_refund=True
    )
    assert (refund.created, refund.transaction.kind) == (True, "refund")
    assert refund.transaction.pk != correction.transaction.pk
    assert legs(refund.transaction) == {Account.AVAILABLE: -usd("3.00"), Account.REFUNDED: usd("3.00")}
    assert Grant.objects.get(pk=grant_id).remaining_nano == usd("4.00")
    assert balances(wallet) == (usd("4.00"), 0)
