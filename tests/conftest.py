"""The cast: alice owns org A, bob is a developer of A, charlie owns org B (an outsider to A)."""

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from accounts.models import Organization, Role
from accounts.selectors import apikeys as apikey_selectors
from tests.accounts.factories import MembershipFactory, OrganizationFactory, UserFactory

pytest_plugins = ["tests.harness"]


@pytest.fixture(autouse=True)
def _clean_caches() -> Iterator[None]:
    cache.clear()
    apikey_selectors._local.clear()
    yield
    apikey_selectors._local.clear()


@pytest.fixture
def org_a(db: None) -> Organization:
    return OrganizationFactory(name="Org A")


@pytest.fixture
def org_b(db: None) -> Organization:
    return OrganizationFactory(name="Org B")


@pytest.fixture
def alice(org_a: Organization) -> User:
    user = UserFactory(username="alice@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.OWNER)
    return user


@pytest.fixture
def bob(org_a: Organization) -> User:
    user = UserFactory(username="bob@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.DEVELOPER)
    return user


@pytest.fixture
def charlie(org_b: Organization) -> User:
    user = UserFactory(username="charlie@example.com")
    MembershipFactory(user=user, organization=org_b, role=Role.OWNER)
    return user
