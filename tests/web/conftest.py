"""The web cast beyond tests/conftest.py: vera views org A, bill is its billing admin. Clients logged in as each,
the default price book, and a maker of hand-made usage records."""

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import ApiKey, Organization, Role
from billing.pricing.models import AIModel
from billing.pricing.services import price_book_seed
from billing.usage.models import UsageRecord
from tests.accounts.factories import MembershipFactory, UserFactory


@pytest.fixture
def book(db: None) -> None:
    price_book_seed()


@pytest.fixture
def vera(org_a: Organization) -> User:
    user = UserFactory(username="vera@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.VIEWER)
    return user


@pytest.fixture
def bill(org_a: Organization) -> User:
    user = UserFactory(username="bill@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.BILLING_ADMIN)
    return user


@pytest.fixture
def committing(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Call something, then run what it scheduled for after commit (a test's transaction never commits)."""

    def run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_alice(alice: User) -> Client:
    return client_for(alice)


@pytest.fixture
def as_bob(bob: User) -> Client:
    return client_for(bob)


@pytest.fixture
def as_charlie(charlie: User) -> Client:
    return client_for(charlie)


@pytest.fixture
def as_vera(vera: User) -> Client:
    return client_for(vera)


@pytest.fixture
def as_bill(bill: User) -> Client:
    return client_for(bill)


_request_ids = itertools.count()


def record(
    organization: Organization,
    *,
    at: datetime,
    model: str = "gpt-4o-mini",
    key: ApiKey | None = None,
    workflow: str = "",
    input_tokens: int = 100,
    cached_input_tokens: int = 0,
    output_tokens: int = 50,
    charge_nano: int = 1_000_000,
    status: str = "ok",
    reasoning_tokens: int = 0,
    drift_flagged: bool = False,
) -> UsageRecord:
    """A usage record made by hand (the gateway writes the real ones)."""
    return UsageRecord.objects.create(
        organization=organization,
        api_key=key,
        request_id=f"req-{next(_request_ids)}",
        endpoint="chat",
        workflow=workflow,
        model=AIModel.objects.get(slug=model),
        status=status,
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        drift_flagged=drift_flagged,
        charge_nano=charge_nano,
        created_at=at,
    )
