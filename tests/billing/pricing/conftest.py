"""Pricing fixtures: the default price book, credit for an organization, and helpers to read what was charged."""

import itertools
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from accounts.models import Organization
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.money import parse_amount
from billing.pricing import services
from tests.accounts.factories import UserFactory

_keys = itertools.count()


def usd(amount: str) -> int:
    """ "12.50" -> nano-units."""
    return parse_amount(amount, allow_zero=True)


def fund(organization: Organization, amount: str, *, kind: str = "paid") -> None:
    ledger.grant_create(
        organization_id=organization.pk,
        kind=kind,
        amount_nano=usd(amount),
        idempotency_key=f"pricing-test-{next(_keys)}",
        actor="test",
    )


def available(organization: Organization) -> int:
    return ledger_selectors.wallet_balance(organization_id=organization.pk).available_nano


def at(text: str) -> datetime:
    """ "2026-03-10 12:00" -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def book(db: None) -> None:
    services.price_book_seed()


@pytest.fixture
def staff(db: None) -> User:
    return UserFactory(username="sam@staff.example.com", is_staff=True)
