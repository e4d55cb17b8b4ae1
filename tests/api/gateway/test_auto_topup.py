"""Auto top-up driven by real metered calls: a chat completion whose charge takes the credit below the
organization's threshold charges its saved card once (localstripe, with its signed webhook granting the credit),
and a call refused for lack of credit triggers it too."""

import pytest

from billing.ledger import services as ledger
from billing.payments.models import TopUp

# ruff: noqa: F811  (pytest fixtures imported by name)
from tests.api.gateway.conftest import MODEL, usd
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery, stripe_webhooks  # noqa: F401
from tests.billing.payments.helpers import available, wait_for
from tests.billing.payments.test_auto_topup import enable, save_card

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def auto_topup(org_a, alice, wallet, localstripe, stripe_webhooks, eager_celery):
    """$5.00 and one nano-unit of credit, a saved card, and auto top-up of $20 below $5."""
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=usd("5") + 1, idempotency_key="seed", actor="test"
    )
    save_card(org_a, alice, localstripe)
    enable(org_a, alice, threshold="5.00", amount="20.00")


def automatic(org):
    return TopUp.objects.filter(organization=org, kind="auto")


def test_a_call_that_crosses_the_threshold_tops_up_once(org_a, auto_topup, client, standin):
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    wait_for(lambda: available(org_a.pk) > usd("20"), what="the automatic top-up's credit")
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert automatic(org_a).count() == 1
    assert automatic(org_a).get().status == "succeeded"


def test_a_call_refused_for_credit_tops_up_too(org_a, auto_topup, client, standin):
    import openai

    ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("5"), idempotency_key="drain", actor="test")
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert refused.value.status_code == 402
    wait_for(lambda: available(org_a.pk) >= usd("20"), what="the automatic top-up's credit")
    assert automatic(org_a).count() == 1
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
