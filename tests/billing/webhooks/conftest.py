import pytest

from tests.billing.webhooks import receiver as receivers

receiver = receivers.receiver  # the fixture


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    """The receivers in these tests listen on 127.0.0.1: allowed, as an operator would for a local receiver. The
    tests of the refusal turn it off."""
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
