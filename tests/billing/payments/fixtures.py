"""Fixtures of the payments tests (imported by the browser tests in tests/e2e too). See helpers.py for the
browser-side and Stripe-side stand-ins."""

import gc
from collections.abc import Iterator

import pytest
from django.test import Client

from billing.payments.models import TopUp
from billing.payments.services.auto_topup_trigger import auto_topup_cache_clear
from tests.billing.payments.helpers import pay
from tests.harness import LocalStripe

# Where localstripe's webhooks go when a test did not ask for them: a port nobody listens on.
BLACKHOLE = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def _payments_hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start each test with an empty auto top-up trigger cache; after a test that used the live server, collect the
    database connections its finished request threads left behind (PostgreSQL's connection slots are shared)."""
    auto_topup_cache_clear()
    yield
    auto_topup_cache_clear()
    if "live_url" in request.fixturenames:
        gc.collect()


@pytest.fixture
def stripe_webhooks(localstripe: LocalStripe, live_url: str, settings: pytest.FixtureRequest) -> Iterator[str]:
    """localstripe delivers its signed events to the live server's /stripe/webhook/, as Stripe would."""
    localstripe.register_webhook(url=f"{live_url}/stripe/webhook/", secret=settings.STRIPE_WEBHOOK_SECRET)  # type: ignore[attr-defined]
    yield f"{live_url}/stripe/webhook/"
    # Events of this test still on their way (localstripe sends them a second late) must not reach the next one.
    localstripe.register_webhook(url=BLACKHOLE, secret=settings.STRIPE_WEBHOOK_SECRET)  # type: ignore[attr-defined]


@pytest.fixture
def eager_celery(settings: pytest.FixtureRequest) -> None:
    """Celery tasks run inline, in the caller's thread, when they are enqueued (after commit).

    Chosen over calling the task functions by hand so the tests go through the real enqueue path
    (`transaction.on_commit` -> `.delay`), with no worker to start or wait for.
    """
    settings.CELERY_TASK_ALWAYS_EAGER = True  # type: ignore[attr-defined]
    settings.CELERY_TASK_EAGER_PROPAGATES = True  # type: ignore[attr-defined]


@pytest.fixture
def alice_client(alice) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def webhook_url(live_url: str) -> str:
    return f"{live_url}/stripe/webhook/"


@pytest.fixture
def paid(org_a, alice, localstripe) -> TopUp:  # type: ignore[no-untyped-def]
    """A top-up of 20 USD, paid at localstripe (its credit granted)."""
    return pay(org_a, alice, localstripe)
