"""The payments fixtures live in fixtures.py so the browser tests (tests/e2e) can import them too."""

from tests.billing.payments.fixtures import (  # noqa: F401
    _auto_topup_local_cache,
    alice_client,
    eager_celery,
    stripe_webhooks,
)
