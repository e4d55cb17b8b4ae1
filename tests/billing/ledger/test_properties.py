"""Property test: random sequences of grants, holds, captures, releases, debits, reversals and expiries.

After every step the wallet must reconcile with its journal (balance equals the journal, no grant remainder goes
negative), nothing may appear or disappear, the held amount must equal the open holds, and a hold or debit of
exactly what the wallet can spend is accepted while one nano-unit more is refused.
"""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts.models import Organization
from billing.ledger import selectors, services
from billing.ledger.models import Account, Grant, Hold, JournalEntry, Wallet
from core.errors import ApplicationError

CENT = 10_000_000

grant_op = st.tuples(
    st.just("grant"),
    st.sampled_from(["paid", "promotional", "refund", "plan_allowance"]),
    st.integers(1, 2_000),  # cents
    st.sampled_from([None, None, 6, 24]),  # expires in hours; few values, so grants tie on expiry
)
place_op = st.tuples(st.just("place"), st.integers(1, 1_500))
# Exactly what the wallet can spend, one nano-unit less, or one more: the boundary of every conditional update.
place_exact_op = st.tuples(st.just("place_exact"), st.integers(-1, 1))
debit_exact_op = st.tuples(st.just("debit_exact"), st.integers(-1, 1))
capture_op = st.tuples(st.just("capture"), st.integers(0, 50), st.integers(0, 100))  # hold index, percent
release_op = st.tuples(st.just("release"), st.integers(0, 50))
debit_op = st.tuples(st.just("debit"), st.integers(1, 1_000))
reverse_op = st.tuples(st.just("reverse"), st.integers(0, 20), st.integers(1, 100))  # grant index, percent
overdraft_op = st.tuples(st.just("overdraft"), st.integers(0, 3_000))
expire_grants_op = st.tuples(st.just("expire_grants"), st.integers(1, 96))  # hours from now
expire_holds_op = st.tuples(st.just("expire_holds"))
operations = st.lists(
    st.one_of(
        grant_op,
        grant_op,
        grant_op,
        place_op,
        place_op,
        place_exact_op,
        capture_op,
        capture_op,
        release_op,
        debit_op,
        debit_exact_op,
        reverse_op,
        overdraft_op,
        expire_grants_op,
        expire_holds_op,
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class Side:
    """One wallet under test and what the test believes about it."""

    organization: Organization
    holds: list[int] = field(default_factory=list)
    grants: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    @property
    def wallet(self) -> Wallet:
        return services.wallet_get_or_create(organization_id=self.organization.pk)


def spendable(side: Side) -> int:
    wallet = side.wallet
    return wallet.available_nano + wallet.overdraft_limit_nano


def apply(side: Side, op: tuple, step: int) -> None:  # type: ignore[type-arg]
    org_id, kind = side.organization.pk, op[0]
    if kind in ("place_exact", "debit_exact"):
        kind, op = kind.removesuffix("_exact"), (kind, spendable(side) + op[1])
        if op[1] <= 0:
            side.outcomes.append("skipped")
            return
    try:
        if kind == "grant":
            expires = None if op[3] is None else timezone.now() + timedelta(hours=op[3])
            result = services.grant_create(
                organization_id=org_id,
                kind=op[1],
                amount_nano=op[2] * CENT,
                idempotency_key=f"{org_id}-g{step}",
                actor="prop",
                expires_at=expires,
            )
            side.grants.append(result.grant.pk)
        elif kind == "place":
            amount = op[1] if op[0] == "place_exact" else op[1] * CENT
            placed = services.hold_place(
                wallet_id=side.wallet.pk, amount_nano=amount, idempotency_key=f"{org_id}-h{step}", actor="p"
            )
            side.holds.append(placed.hold_id)
        elif kind == "capture" and side.holds:
            hold = Hold.objects.get(pk=side.holds[op[1] % len(side.holds)])
            services.hold_capture(hold_id=hold.pk, amount_nano=hold.amount_nano * op[2] // 100, actor="p")
        elif kind == "release" and side.holds:
            services.hold_release(hold_id=side.holds[op[1] % len(side.holds)], actor="p")
        elif kind == "debit":
            amount = op[1] if op[0] == "debit_exact" else op[1] * CENT
            services.wallet_debit(
                organization_id=org_id, amount_nano=amount, idempotency_key=f"{org_id}-d{step}", actor="p"
            )
        elif kind == "reverse" and side.grants:
            grant = Grant.objects.get(pk=side.grants[op[1] % len(side.grants)])
            services.grant_reverse(
                grant_id=grant.pk,
                amount_nano=max(grant.remaining_nano * op[2] // 100, 1),
                idempotency_key=f"{org_id}-r{step}",
                actor="p",
                reason="property test",
            )
        elif kind == "overdraft":
            services.wallet_overdraft_set(organization_id=org_id, overdraft_limit_nano=op[1] * CENT, actor="p")
        side.outcomes.append("ok")
    except ApplicationError as exc:
        side.outcomes.append(type(exc).__name__ + (f":{exc.code}" if exc.code else ""))


def assert_conserved(wallet: Wallet) -> None:
    """Every nano-unit ever granted is still in the wallet, or was spent, expired, refunded or taken back."""
    sums = dict(
        JournalEntry.objects.filter(transaction__wallet=wallet)
        .values_list("account")
        .annotate(total=Sum("amount_nano"))
        .values_list("account", "total")
    )
    taken_back = (
        JournalEntry.objects.filter(
            transaction__wallet=wallet, account__startswith="funding_", amount_nano__gt=0
        ).aggregate(total=Sum("amount_nano"))["total"]
        or 0
    )
    granted = Grant.objects.filter(wallet=wallet).aggregate(total=Sum("amount_nano"))["total"] or 0
    outflows = sum(sums.get(account, 0) for account in (Account.SPENT, Account.BREAKAGE, Account.REFUNDED))
    assert granted == wallet.available_nano + wallet.held_nano + outflows + taken_back


@pytest.mark.django_db
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
# Grants that tie on expiry are drawn promotional first; a hold of exactly the balance, then one nano-unit more.
@example(ops=[("grant", "paid", 1000, None), ("grant", "promotional", 1000, None), ("debit", 500)])
@example(ops=[("grant", "refund", 300, 6), ("grant", "promotional", 300, 6), ("place", 400), ("capture", 0, 100)])
@example(ops=[("grant", "paid", 100, None), ("place_exact", 1), ("place_exact", 0), ("place_exact", 1)])
def test_random_sequences_keep_the_books(ops):
    side = Side(Organization.objects.create(name="prop"))
    for step, op in enumerate(ops):
        if op[0] == "expire_grants":
            services.grants_expire(now=timezone.now() + timedelta(hours=op[1]))
        elif op[0] == "expire_holds":
            services.holds_expire(now=timezone.now() + timedelta(days=2))
        else:
            apply(side, op, step)
        wallet = side.wallet
        assert selectors.wallet_reconcile(wallet_id=wallet.pk) == [], op
        wallet.refresh_from_db()
        assert wallet.available_nano >= -wallet.overdraft_limit_nano
        assert wallet.held_nano == sum(
            Hold.objects.filter(wallet=wallet, status="open").values_list("amount_nano", flat=True)
        )
        assert_conserved(wallet)
        # One nano-unit over what the wallet can spend is refused, exactly that is accepted.
        if op[0].endswith("_exact") and side.outcomes[-1] != "skipped":
            assert side.outcomes[-1] == ("InsufficientCredit:insufficient_credit" if op[1] > 0 else "ok"), op
