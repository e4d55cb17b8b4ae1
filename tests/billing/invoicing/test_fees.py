"""Fees prepaid credit could not pay go on the invoice (billing.pricing.services.fees): a commitment's monthly
payment left due is listed once, no longer retried from credit, and paid by the invoice's payment with the debit
credit would have made, which no later invoice lists again."""

from datetime import datetime

import pytest
import time_machine
from django.db import DatabaseError

from billing.invoicing import selectors, services
from billing.invoicing.models import Invoice, InvoiceLine
from billing.invoicing.services import close as close_module
from billing.invoicing.services.collection import invoice_paid
from billing.ledger.models import JournalTransaction, Wallet
from billing.pricing import services as pricing
from billing.pricing.models import CommitmentCharge
from tests.billing.invoicing.conftest import at, booked_at, fund, usd
from tests.billing.pricing.conftest import monthly_offer


class moment:
    def __init__(self, text: str):
        self.travel = time_machine.travel(at(text), tick=False)
        self.booked = booked_at(at(text))

    def __enter__(self) -> None:
        self.travel.__enter__()
        self.booked.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.booked.__exit__(*exc)
        self.travel.__exit__(*exc)


def test_a_commitment_payment_credit_could_not_pay_is_invoiced_then_paid_by_the_invoice(org):
    with moment("2026-10-20 00:00"):
        fund(org, "6.60")
        commitment = pricing.commitment_purchase(organization_id=org.pk, offer_id=monthly_offer().pk)  # month 0
    with moment("2026-11-20 00:00"):
        assert pricing.commitments_bill() == {"due": 1}  # month 1: no credit left
    with time_machine.travel(at("2026-12-01 01:00"), tick=False):
        october, november = services.invoices_close_due(organization_ids=[org.pk])
        assert services.invoices_close_due(organization_ids=[org.pk]) == []  # closed once
    assert [(line.kind, line.amount_nano) for line in selectors.invoice_lines(invoice_id=october.pk)] == [
        ("commitment_fee", usd("6.60")),
        ("credit_paid", -usd("6.60")),
    ]
    due = CommitmentCharge.objects.get(commitment=commitment, month_index=1)
    fee = selectors.invoice_lines(invoice_id=november.pk).get(kind="commitment_fee")
    assert (fee.amount_nano, fee.fee_ref, fee.source, fee.period_start, fee.period_end) == (
        usd("6.60"),
        f"commitment_charge:{due.pk}",
        "invoice",
        at("2026-11-20 00:00"),
        at("2026-12-20 00:00"),
    )
    assert fee.description == f"reserved commitment {commitment.pk}, 2026-11-20 to 2026-12-20"
    assert (november.charges_nano, november.credit_applied_nano, november.total_minor) == (usd("6.60"), 0, 660)
    due.refresh_from_db()
    assert (due.status, due.invoiced_at) == ("due", at("2026-12-01 01:00"))

    # Credit arriving now does not pay it a second time: the invoice collects it.
    with moment("2026-12-02 00:00"):
        fund(org, "10.00")
        assert pricing.commitments_bill() == {"nothing": 1}
    due.refresh_from_db()
    assert due.status == "due"

    with moment("2026-12-03 00:00"):
        invoice_paid(invoice_id=november.pk)  # 6.60 by card pays the month, out of the payment
        invoice_paid(invoice_id=november.pk)  # a replayed webhook pays nothing more
    due.refresh_from_db()
    debit = JournalTransaction.objects.get(pk=due.debit_transaction_id)
    assert (due.status, debit.idempotency_key) == ("paid", f"debit:commitment:{commitment.pk}:month:1")
    assert Wallet.objects.get(organization=org).available_nano == usd("10.00")

    # December's invoice does not list the debit booked on Dec 3: November's line is where it belongs.
    with time_machine.travel(at("2027-01-01 01:00"), tick=False):
        [december] = services.invoices_close_due(organization_ids=[org.pk])
    assert not InvoiceLine.objects.filter(invoice=december, kind="commitment_fee").exists()
    assert december.charges_nano == 0
    assert InvoiceLine.objects.filter(fee_ref=f"commitment_charge:{due.pk}").count() == 1


def test_a_close_killed_after_the_invoiced_renewal_lists_its_fee_once_when_resumed(org, monkeypatch):
    pricing.plan_create(slug="starter", name="Starter", fee_nano=usd("31.00"))
    with moment("2026-10-01 00:00"):
        fund(org, "31.00")
        subscription = pricing.subscription_create(organization_id=org.pk, plan_slug="starter")
    with moment("2026-11-01 00:00"):
        assert pricing.subscriptions_renew() == {"past_due": 1}
    with time_machine.travel(at("2026-12-01 01:00"), tick=False):
        real = close_module.fees_invoice

        def dying(*, fee_refs: list[str], now: datetime) -> None:
            if fee_refs:  # November's: the worker dies before its lines commit
                raise DatabaseError("killed")
            real(fee_refs=fee_refs, now=now)

        with monkeypatch.context() as patch, pytest.raises(DatabaseError):
            patch.setattr(close_module, "fees_invoice", dying)
            services.invoices_close_due(organization_ids=[org.pk])
        # October was finalized, and the renewal committed in its own transaction; November has no lines.
        subscription.refresh_from_db()
        assert subscription.status == "active"
        assert not InvoiceLine.objects.filter(kind="plan_fee", source="invoice").exists()
        [november] = services.invoices_close_due(organization_ids=[org.pk])  # resumed: November only
    october = Invoice.objects.get(organization=org, period_start=at("2026-10-01 00:00"))
    fees = InvoiceLine.objects.filter(kind="plan_fee", source="invoice")
    assert [(line.invoice_id, line.description, line.amount_nano) for line in fees] == [
        (november.pk, "Starter plan, 2026-11-01 to 2026-12-01", usd("31.00"))
    ]
    assert (october.total_minor, november.total_minor) == (0, 3100)
