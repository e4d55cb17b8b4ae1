"""The payments fixtures live in fixtures.py so the browser tests (tests/e2e) can import them too."""

from tests.billing.payments.fixtures import (  # noqa: F401
    _payments_hygiene,
    alice_client,
    eager_celery,
    paid,
    stripe_webhooks,
    webhook_url,
)
