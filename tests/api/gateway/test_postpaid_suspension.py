"""A call refused while the organization's postpaid use is suspended names the unpaid invoice (402, code
postpaid_suspended, header x-billing-unpaid-invoice); prepaid credit still pays, and payment restores it all."""

from datetime import UTC, datetime, timedelta

import openai
import pytest
from django.utils import timezone

from billing.invoicing.services import close, dunning
from billing.invoicing.services.collection import invoice_paid
from billing.ledger import services as ledger
from tests.billing.invoicing.conftest import booked_at, usd

pytestmark = pytest.mark.usefixtures("standin")
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def suspended(org_a, wallet):
    """0.50 owed on an overdraft, invoiced (a period that ended two hours ago) and left unpaid past the grace."""
    start = datetime(timezone.now().year, timezone.now().month, 1, tzinfo=UTC)
    end = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)
    assert end > start + timedelta(hours=1), "needs to run after 03:00 UTC on the 1st"
    ledger.wallet_overdraft_set(organization_id=org_a.pk, overdraft_limit_nano=usd("5.00"), actor="test")
    with booked_at(start + timedelta(minutes=30)):
        ledger.wallet_debit(
            organization_id=org_a.pk, amount_nano=usd("0.50"), idempotency_key="fee", actor="t", category="plan_fee"
        )
    invoice = close.invoice_open(organization_id=org_a.pk, period_start=start, period_end=end)
    for step in close.CLOSE_STEPS:
        invoice = step(invoice_id=invoice.pk)
    assert dunning.postpaid_suspend(invoice_id=invoice.pk) is not None
    return invoice


def test_a_refused_call_names_the_unpaid_invoice(client, org_a, suspended):
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    error = caught.value
    assert (error.status_code, error.code) == (402, "postpaid_suspended")
    assert error.response.headers["x-billing-unpaid-invoice"] == suspended.number
    assert f"until invoice {suspended.number} (0.50 USD) is paid" in error.message
    # Paid: the overdraft is back, the same call goes through.
    invoice_paid(invoice_id=suspended.pk)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
