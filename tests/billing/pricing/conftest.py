"""Pricing fixtures: the default price book, credit for an organization, and helpers to read what was charged."""

import itertools
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from accounts.models import Organization
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.pricing import services
from billing.pricing.models import CommitmentOffer
from core.money import parse_amount
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


def monthly_offer(**terms: object) -> CommitmentOffer:
    """A 3-month reserved commitment offer paid monthly: 10M Llama 70B tokens a month at 25% off ($6.60 a month)."""
    values = {
        "name": "Llama 70B, 10M tokens a month",
        "model": "llama-3.1-70b-instruct",
        "committed_tokens_per_month": 10_000_000,
        "term_months": 3,
        "discount_bps": 2_500,
        "payment": "monthly",
        "blended_price_micro_per_mtok": 880_000,
    } | terms
    return services.commitment_offer_create(**values)


def at(text: str) -> datetime:
    """ "2026-03-10 12:00" -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def book(db: None) -> None:
    services.price_book_seed()


@pytest.fixture
def staff(db: None) -> User:
    return UserFactory(username="sam@staff.example.com", is_staff=True)
