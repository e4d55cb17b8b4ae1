"""Operator commands: invoice_close (close or resume a period, print the invoice) and invoices_reconcile."""

import json
from datetime import date
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from billing.invoicing.models import Invoice, MonthRollup
from billing.invoicing.services.rollup import rollup_day
from tests.billing.invoicing.conftest import at, booked_at
from tests.billing.invoicing.test_close import october


def test_invoice_close_prints_the_finalized_invoice_as_json(org):
    october(org)
    out = StringIO()
    with time_machine.travel(at("2026-11-01 01:00:01")):
        call_command("invoice_close", "--org", str(org.pk), "--period", "2026-10", "--json", stdout=out)
        again = StringIO()
        call_command("invoice_close", "--org", str(org.pk), "--period", "2026-10", "--json", stdout=again)
    document = json.loads(out.getvalue())
    assert json.loads(again.getvalue()) == document
    assert (document["number"], document["status"], document["total"], document["carry_out"]) == (
        "INV-2026-000001",
        "finalized",
        "0.15",
        "0.00045",
    )
    assert document["charges"] == "0.75045"
    assert [line["kind"] for line in document["lines"]][-3:] == ["plan_fee", "credit_promotional", "credit_paid"]


@pytest.mark.parametrize(
    ("period", "message"),
    [("2026-13", "is not a period"), ("October", "is not a period"), ("2026-11", "has not ended")],
)
def test_invoice_close_refuses_with_a_clear_message(org, period, message):
    with booked_at(at("2026-11-02 00:00")):
        october(org)
    with time_machine.travel(at("2026-11-10 00:00")), pytest.raises(CommandError, match=message):
        call_command("invoice_close", "--org", str(org.pk), "--period", period, stdout=StringIO())


def test_invoice_close_of_an_unknown_organization(db):
    with pytest.raises(CommandError, match="organization not found"):
        call_command("invoice_close", "--org", "999999", "--period", "2026-10", stdout=StringIO())


def test_invoices_reconcile_reports_agreement(org):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        call_command("invoice_close", "--org", str(org.pk), "--period", "2026-10", stdout=StringIO())
    out = StringIO()
    call_command("invoices_reconcile", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"organizations_checked": 1, "problems": {}}


def test_invoices_reconcile_checks_the_month_rollup_of_an_organization_with_no_invoice_yet(org):
    october(org)
    for day in range(1, 32):
        assert rollup_day(day=date(2026, 10, day))
    row = MonthRollup.objects.filter(organization=org).order_by("id").first()
    assert row is not None and not Invoice.objects.exists()
    out = StringIO()
    call_command("invoices_reconcile", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"organizations_checked": 1, "problems": {}}
    MonthRollup.objects.filter(pk=row.pk).update(tokens=row.tokens + 1)
    with pytest.raises(CommandError, match="disagree with the ledger in 1 organizations"):
        call_command("invoices_reconcile", "--json", stdout=(out := StringIO()))
    [problem] = json.loads(out.getvalue())["problems"][str(org.pk)]
    assert problem == f"month rollup 2026-10 (row {row.pk}): tokens {row.tokens + 1} is not its days' sum {row.tokens}"
    MonthRollup.objects.filter(pk=row.pk).update(tokens=row.tokens)  # as the autouse check expects
