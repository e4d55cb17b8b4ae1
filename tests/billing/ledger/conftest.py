import itertools
from collections.abc import Iterator

import pytest
from django.db import connection

from accounts.models import Organization
from billing.ledger import selectors, services
from billing.ledger.models import Wallet
from core.money import parse_amount
from tests.accounts.factories import OrganizationFactory


def usd(amount: str) -> int:
    """ "12.50" -> nano-units."""
    return parse_amount(amount, allow_zero=True)


@pytest.fixture(autouse=True)
def _journal_checks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every ledger test that used the database: every wallet reconciles with its journal, and the deferred
    constraints (foreign keys) hold, checked now since the test's transaction never commits."""
    database = next((name for name in ("transactional_db", "db") if name in request.fixturenames), None)
    if database is None:
        yield
        return
    request.getfixturevalue(database)  # so the database outlives these checks
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for wallet_id in Wallet.objects.values_list("id", flat=True):
        assert selectors.wallet_reconcile(wallet_id=wallet_id) == []


@pytest.fixture
def org(db: None) -> Organization:
    return OrganizationFactory(name="Acme")


@pytest.fixture
def wallet(org: Organization) -> Wallet:
    return services.wallet_get_or_create(organization_id=org.pk)


_keys = itertools.count()


def fund(org: Organization, amount: str, *, kind: str = "paid", key: str | None = None, **options: object) -> int:
    """Grant credit; returns the grant's id."""
    result = services.grant_create(
        organization_id=org.pk,
        kind=kind,
        amount_nano=usd(amount),
        idempotency_key=key or f"test-grant-{next(_keys)}",
        actor="test",
        **options,  # type: ignore[arg-type]
    )
    return result.grant.pk


def balances(wallet: Wallet) -> tuple[int, int]:
    wallet.refresh_from_db()
    return wallet.available_nano, wallet.held_nano
