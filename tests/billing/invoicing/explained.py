"""A month to explain: an organization's October 2026 billed over two days, two API keys (and none), two workflows,
two models, part paid by credit and part by overdraft, closed into a finalized invoice."""

from dataclasses import dataclass

import time_machine

from accounts.models import ApiKey, Organization
from accounts.services.apikeys import apikey_create
from billing.invoicing import services
from billing.invoicing.models import Invoice
from billing.ledger import services as ledger
from billing.usage.models import UsageRecord
from tests.billing.invoicing.conftest import at, booked_at, call, fund, usd

OCT = at("2026-10-01 00:00")


@dataclass
class Month:
    invoice: Invoice
    deploy: ApiKey
    notebook: ApiKey
    records: list[UsageRecord]


def october_invoiced(org: Organization) -> Month:
    """By hand (gpt-4o: input 2.50, output 10.00 per million tokens; gpt-4o-mini 0.15 / 0.60): each gpt-4o call of
    100,000 input and 10,000 output tokens costs 0.25 + 0.10 = 0.35; the gpt-4o-mini call of 1,000 + 500 tokens
    0.00015 + 0.0003 = 0.00045. Three gpt-4o calls and one gpt-4o-mini call: 1.05045 of charges; 0.50 paid credit,
    the overdraft covers 0.55045: the invoice asks for 0.55 and carries 0.00045."""
    deploy = apikey_create(organization_id=org.pk, name="deploy")[0]
    notebook = apikey_create(organization_id=org.pk, name="notebook")[0]
    records = []
    with booked_at(at("2026-10-05 09:00")):
        fund(org, "0.50")
        ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="test")
        gpt4o = {"model": "gpt-4o", "input_tokens": 100_000, "output_tokens": 10_000}
        records.append(call(org, **gpt4o, api_key_id=deploy.pk, workflow="chat"))
        records.append(call(org, **gpt4o, api_key_id=deploy.pk, workflow="summaries"))
    with booked_at(at("2026-10-06 14:30")):
        records.append(call(org, **gpt4o, api_key_id=notebook.pk, workflow="chat"))
        records.append(call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=500))
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    for record in records:
        record.refresh_from_db()
    return Month(invoice=invoice, deploy=deploy, notebook=notebook, records=records)
