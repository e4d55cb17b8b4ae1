"""The cast: alice owns org A, bob is a developer of A, charlie owns org B (an outsider to A)."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connections

from accounts.models import Organization, Role
from accounts.selectors import apikeys as apikey_selectors
from api.gateway.cache import caches_clear as gateway_caches_clear
from tests.accounts.factories import MembershipFactory, OrganizationFactory, UserFactory

pytest_plugins = ["tests.harness"]


@pytest.fixture(scope="session", autouse=True)
def _close_the_async_thread_connection(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Async tests reach the ORM through sync_to_async's one shared thread, whose database connection would still
    be open when the test database is dropped. Close it at the end of the session."""
    yield

    def close() -> None:
        with django_db_blocker.unblock():
            asyncio.run(sync_to_async(connections.close_all)())

    # In a thread of its own: the browser tests leave an event loop running on this one.
    closer = threading.Thread(target=close)
    closer.start()
    closer.join()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: pytest.FixtureRequest) -> None:
    """PBKDF2's many rounds cost most of a second per user; no test here is about password storage."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _clean_caches() -> Iterator[None]:
    """Every test starts with empty caches: the shared one (Redis), the API keys' and the gateway's in-process ones
    (they hold database ids, which mean other rows after the database is flushed)."""
    cache.clear()
    apikey_selectors.local_cache.clear()
    gateway_caches_clear()
    yield
    apikey_selectors.local_cache.clear()
    gateway_caches_clear()


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
