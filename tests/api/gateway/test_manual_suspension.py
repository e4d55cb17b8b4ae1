"""A call refused while staff suspended the organization's postpaid use by hand says so (402, code
postpaid_suspended) without naming an invoice; restored, the same call goes through."""

import openai
import pytest

from billing.invoicing.services.suspensions import postpaid_restore_manual, postpaid_suspend_manual
from billing.ledger import services as ledger
from tests.billing.invoicing.conftest import usd

pytestmark = pytest.mark.usefixtures("standin")
MESSAGES = [{"role": "user", "content": "Say hello."}]


def test_a_call_refused_under_a_manual_suspension_names_no_invoice(client, org_a, wallet):
    ledger.wallet_overdraft_set(organization_id=org_a.pk, overdraft_limit_nano=usd("5.00"), actor="test")
    postpaid_suspend_manual(organization_id=org_a.pk, reason="Fraud review", actor="test")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    error = caught.value
    assert (error.status_code, error.code) == (402, "postpaid_suspended")
    assert "x-billing-unpaid-invoice" not in error.response.headers
    assert "Postpaid use is suspended" in error.message and "Contact support" in error.message
    postpaid_restore_manual(organization_id=org_a.pk, reason="Review done", actor="test")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
