"""Invoicing fixtures: an organization with the default price book, and calls metered as the gateway meters them
(a hold, a capture at the rated price, and the usage record with its rating lines)."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.db import connection

from accounts.models import Organization
from billing.invoicing import selectors
from billing.invoicing.models import Invoice
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from billing.pricing import rating
from billing.pricing import services as pricing
from billing.usage.models import UsageRecord
from billing.usage.services import UsageRow, usage_record_create
from core.money import parse_amount
from tests.accounts.factories import OrganizationFactory

_keys = itertools.count()


def usd(amount: str) -> int:
    """ "12.50" -> nano-units."""
    return parse_amount(amount, allow_zero=True)


def at(text: str) -> datetime:
    """ "2026-03-10 12:00" -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fund(organization: Organization, amount: str, *, kind: str = "paid") -> int:
    result = ledger.grant_create(
        organization_id=organization.pk,
        kind=kind,
        amount_nano=usd(amount),
        idempotency_key=f"invoicing-test-{next(_keys)}",
        actor="test",
    )
    return result.grant.pk


def call(
    organization: Organization,
    *,
    model: str = "gpt-4o-mini",
    input_tokens: int = 1000,
    cached_input_tokens: int = 0,
    output_tokens: int = 500,
    service_tier: str = "default",
    api_key_id: int | None = None,
    workflow: str = "",
    reasoning_tokens: int = 0,
) -> UsageRecord:
    """One metered call, as the gateway books it: rated, held, captured, recorded."""
    usage = rating.Usage(
        model_slug=model,
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        output_tokens=output_tokens,
        service_tier=service_tier,
        reasoning_tokens=reasoning_tokens,
    )
    rated = pricing.usage_rate(organization_id=organization.pk, usage=usage, at=datetime.now(UTC))
    wallet = ledger.wallet_get_or_create(organization_id=organization.pk)
    request_id = f"req-{next(_keys)}"
    hold = ledger.hold_place(
        wallet_id=wallet.pk, amount_nano=rated.credit_nano + 1, idempotency_key=request_id, actor="test"
    )
    ledger.hold_capture(hold_id=hold.hold_id, amount_nano=rated.credit_nano, actor="test")
    return usage_record_create(
        row=UsageRow(
            organization_id=organization.pk,
            api_key_id=api_key_id,
            source="gateway",
            request_id=request_id,
            endpoint="chat",
            workflow=workflow,
            model_slug=model,
            service_tier=service_tier,
            status="ok",
            input_tokens=input_tokens,
            cached_input_tokens=cached_input_tokens,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning_tokens,
            price_version_id=rated.price_version_id,
            charge_nano=rated.credit_nano,
            quota_tokens=rated.quota_tokens,
            commitment_tokens=rated.commitment_tokens,
            lines=[line.as_dict() for line in rated.lines],
            hold_id=hold.hold_id,
        )
    )


def period_now() -> tuple[datetime, datetime]:
    """The calendar month the database's clock is in (the ledger books at the database's time)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0].astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@pytest.fixture
def book(db: None) -> None:
    pricing.price_book_seed()


@pytest.fixture
def org(book: None) -> Organization:
    return OrganizationFactory(name="Acme")


@pytest.fixture(autouse=True)
def _books_agree(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every invoicing test that used the database: every wallet reconciles with its journal, and every
    finalized invoice with the ledger (lines equal their entries; each charge on exactly one invoice)."""
    database = next((name for name in ("transactional_db", "db") if name in request.fixturenames), None)
    if database is None:
        yield
        return
    request.getfixturevalue(database)
    yield
    for wallet_id in Wallet.objects.values_list("id", flat=True):
        assert ledger_selectors.wallet_reconcile(wallet_id=wallet_id) == []
    for organization_id in Invoice.objects.values_list("organization_id", flat=True).distinct():
        assert selectors.invoices_reconcile(organization_id=organization_id) == []


# Tables whose rows the database stamps with its own clock (created_at DEFAULT now()), which no test can move.
_CLOCKED = ("ledger_wallet", "ledger_journaltransaction", "ledger_grant", "ledger_hold", "usage_usagerecord")


class booked_at:
    """Moves the database's clock by hand for what is booked inside the block: every row of the clocked tables
    written in it gets `created_at = moment` (the journal's append-only triggers are off while this one statement
    runs: session_replication_role is a superuser's switch for exactly this). Time in Python is moved with
    time_machine; PostgreSQL's now() cannot be."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __enter__(self) -> None:
        with connection.cursor() as cursor:
            self.marks = {}
            for table in _CLOCKED:
                cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
                self.marks[table] = cursor.fetchone()[0]

    def __exit__(self, *exc: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
            try:
                for table, mark in self.marks.items():
                    cursor.execute(
                        f"UPDATE {table} SET created_at = %s WHERE id > %s",
                        [self.moment, mark],
                    )
            finally:
                cursor.execute("SET session_replication_role = origin")
