"""The customer's reads of invoices: "explain my bill" adds up to every usage line (by day, key and workflow, and
request by request), each request finds its lines, the running period's live total is what its invoice then
says, and the statuses, parties and tax a customer reads."""

from dataclasses import replace
from datetime import date, timedelta

import pytest
import time_machine
from django.utils import timezone

from billing.invoicing import explain, services, statements
from billing.invoicing.models import CollectionMethod, Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing.invoicing.selectors import lines_traced
from billing.ledger import services as ledger
from billing.ledger.models import JournalTransaction
from billing.usage.models import UsageRecord
from tests.accounts.factories import OrganizationFactory
from tests.billing.invoicing.conftest import at, call, fund, period_now, usd
from tests.billing.invoicing.explained import october_invoiced


def usage_lines(invoice: Invoice) -> list[InvoiceLine]:
    return list(lines_traced(InvoiceLine.objects.filter(invoice=invoice, kind=LineKind.USAGE).order_by("position")))


def test_every_usage_line_breaks_down_by_day_key_and_workflow_into_parts_that_add_up_to_it(org):
    month = october_invoiced(org)
    assert (month.invoice.charges_nano, month.invoice.total_minor) == (usd("1.05045"), 55)
    lines = usage_lines(month.invoice)
    assert len(lines) == 4  # gpt-4o input and output, gpt-4o-mini input and output
    for line in lines:
        for by in explain.BREAKDOWNS:
            groups = explain.line_breakdown(line=line, by=by)
            assert sum(g.amount_nano for g in groups) == line.amount_nano, (line.description, by)
            assert sum(g.tokens for g in groups) == line.quantity, (line.description, by)
            assert sum(g.requests for g in groups) == len(line.traced_usage_ids)
    gpt4o_input = next(line for line in lines if line.model.slug == "gpt-4o" and line.token_kind == "input")
    assert [(g.value, g.requests, g.amount_nano) for g in explain.line_breakdown(line=gpt4o_input, by="day")] == [
        ("2026-10-05", 2, usd("0.50")),
        ("2026-10-06", 1, usd("0.25")),
    ]
    by_key = explain.line_breakdown(line=gpt4o_input, by="key")
    assert [(g.value, g.label[:8], g.requests) for g in by_key] == [
        (str(month.deploy.pk), "deploy (", 2),
        (str(month.notebook.pk), "notebook", 1),
    ]
    mini = next(line for line in lines if line.model.slug == "gpt-4o-mini" and line.token_kind == "output")
    assert [(g.value, g.label) for g in explain.line_breakdown(line=mini, by="key")] == [("", "(no key)")]
    assert [(g.value, g.label) for g in explain.line_breakdown(line=mini, by="workflow")] == [("", "(untagged)")]
    by_workflow = explain.line_breakdown(line=gpt4o_input, by="workflow")
    assert [(g.value, g.requests, g.amount_nano) for g in by_workflow] == [
        ("chat", 2, usd("0.50")),
        ("summaries", 1, usd("0.25")),
    ]


def test_the_requests_of_a_line_add_up_to_it_and_name_the_ledger_transaction_that_charged_each(org):
    month = october_invoiced(org)
    line = next(
        line for line in usage_lines(month.invoice) if line.model.slug == "gpt-4o" and line.token_kind == "output"
    )
    requests, total = explain.line_requests(line=line, filters=explain.RequestFilter(), limit=50, offset=0)
    assert total == 3
    assert sum(r.amount_nano for r in requests) == line.amount_nano == usd("0.30")
    assert sum(r.tokens for r in requests) == line.quantity == 30_000
    assert [r.created_at.date() for r in requests] == [date(2026, 10, 5), date(2026, 10, 5), date(2026, 10, 6)]
    for r in requests:
        record = UsageRecord.objects.get(pk=r.usage_id)
        settle = JournalTransaction.objects.get(pk=r.transaction_id)
        assert settle.idempotency_key == f"hold:{record.hold_id}:settle"
        assert (r.input_tokens, r.output_tokens, r.tokens) == (100_000, 10_000, 10_000)
    # Paged: two pages of two hold the same three requests.
    first, total_first = explain.line_requests(line=line, filters=explain.RequestFilter(), limit=2, offset=0)
    second, total_second = explain.line_requests(line=line, filters=explain.RequestFilter(), limit=2, offset=2)
    assert (total_first, total_second) == (3, 3)
    assert [r.usage_id for r in first + second] == [r.usage_id for r in requests]
    past, total_past = explain.line_requests(line=line, filters=explain.RequestFilter(), limit=2, offset=10)
    assert (past, total_past) == ([], 3)


def test_a_group_filters_the_requests_to_exactly_that_group(org):
    month = october_invoiced(org)
    line = next(
        line for line in usage_lines(month.invoice) if line.model.slug == "gpt-4o" and line.token_kind == "input"
    )
    none = explain.RequestFilter()
    cases = {
        replace(none, day=date(2026, 10, 5)): {month.records[0].pk, month.records[1].pk},
        replace(none, key=str(month.notebook.pk)): {month.records[2].pk},
        replace(none, workflow="chat"): {month.records[0].pk, month.records[2].pk},
        replace(none, workflow="chat", day=date(2026, 10, 6)): {month.records[2].pk},
        replace(none, key=""): set(),  # every gpt-4o call had a key
        replace(none, workflow="nope"): set(),
    }
    for filters, expected in cases.items():
        requests, total = explain.line_requests(line=line, filters=filters, limit=50, offset=0)
        assert ({r.usage_id for r in requests}, total) == (expected, len(expected)), filters


def test_a_request_finds_the_lines_it_is_on_and_a_request_of_the_open_period_none(org):
    month = october_invoiced(org)
    record = month.records[3]  # gpt-4o-mini: an input line and an output line
    place = explain.record_place(organization_id=org.pk, usage_id=record.pk, created_at=record.created_at)
    assert place.invoice == month.invoice
    assert [line.description for line in place.lines] == [
        "gpt-4o-mini default: input",
        "gpt-4o-mini default: output",
    ]
    assert all(line.invoice_number == month.invoice.number for line in place.lines)
    now_record = call(org, model="gpt-4o-mini")
    assert explain.record_place(organization_id=org.pk, usage_id=now_record.pk, created_at=now_record.created_at) == (
        explain.RequestPlace(invoice=None, lines=[])
    )
    assert explain.records_invoices(
        organization_id=org.pk, created=[now_record.created_at, record.created_at, month.records[0].created_at]
    ) == [None, month.invoice, month.invoice]
    # Another organization's request at the same moment is on none of this organization's invoices.
    other = OrganizationFactory()
    assert explain.records_invoices(organization_id=other.pk, created=[record.created_at]) == [None]


def test_the_running_total_is_what_the_invoice_of_the_period_then_says(org):
    start, end = period_now()
    fund(org, "0.001")  # a little credit, then the overdraft
    ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="test")
    for _ in range(3):
        call(org, model="gpt-4o", input_tokens=12_345, output_tokens=678)
    fund(org, "0.002", kind="promotional")
    call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=500)
    (running,) = statements.running_periods(organization_id=org.pk, now=timezone.now())
    assert (running.start, running.end, running.ended) == (start, end, False)
    assert running.charges_nano == sum(
        UsageRecord.objects.filter(organization=org).values_list("charge_nano", flat=True)
    )
    with time_machine.travel(end + timedelta(hours=2)):
        invoice = services.invoice_close(organization_id=org.pk, period_start=start)
    assert (invoice.charges_nano, invoice.credit_applied_nano, invoice.total_exact_nano, invoice.total_minor) == (
        running.charges_nano,
        running.credit_applied_nano,
        running.total_exact_nano,
        running.total_minor,
    )
    assert running.due_nano == invoice.total_minor * 10_000_000


def test_an_organization_without_a_wallet_has_no_running_period(book):
    assert statements.running_periods(organization_id=OrganizationFactory().pk, now=timezone.now()) == []


def test_another_organizations_invoice_is_not_found(org):
    month = october_invoiced(org)
    other = OrganizationFactory()
    with pytest.raises(statements.InvoiceNotFound):
        statements.organization_invoice(organization_id=other.pk, invoice_id=month.invoice.pk)
    assert statements.organization_invoice(organization_id=org.pk, invoice_id=month.invoice.pk) == month.invoice
    assert list(statements.organization_invoices(organization_id=other.pk)) == []


def invoice(**fields):
    defaults = {
        "status": InvoiceStatus.FINALIZED,
        "total_minor": 1000,
        "finalized_at": at("2026-11-01 02:00"),
        "collection_method": CollectionMethod.CHARGE_AUTOMATICALLY,
        "days_until_due": 30,
    }
    return Invoice(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        ({"status": InvoiceStatus.DRAFT, "finalized_at": None}, "2026-11-01 03:00", "being prepared"),
        ({}, "2026-11-01 03:00", "open"),
        ({"payment_failed_at": at("2026-11-01 02:01")}, "2026-11-01 03:00", "past due"),
        ({"collection_method": CollectionMethod.SEND_INVOICE}, "2026-11-30 03:00", "open"),
        ({"collection_method": CollectionMethod.SEND_INVOICE}, "2026-12-01 03:00", "past due"),
        ({"total_minor": 0}, "2026-11-01 03:00", "paid"),
        ({"status": InvoiceStatus.PAID}, "2026-11-01 03:00", "paid"),
        ({"status": InvoiceStatus.VOID}, "2026-11-01 03:00", "void"),
        ({"status": InvoiceStatus.UNCOLLECTIBLE}, "2026-11-01 03:00", "uncollectible"),
    ],
)
def test_the_status_a_customer_reads(fields, now, expected):
    assert statements.invoice_customer_status(invoice(**fields), now=at(now)) == expected


def test_the_due_date_is_finalization_for_the_card_and_net_terms_for_a_sent_invoice():
    assert statements.invoice_due_at(invoice()) == at("2026-11-01 02:00")
    assert statements.invoice_due_at(invoice(collection_method=CollectionMethod.SEND_INVOICE, days_until_due=14)) == (
        at("2026-11-15 02:00")
    )
    assert statements.invoice_due_at(invoice(status=InvoiceStatus.DRAFT, finalized_at=None)) is None


def test_billed_to_is_the_snapshot_when_there_is_one_else_the_organizations_name(book):
    org = OrganizationFactory(name="Acme")
    bare = invoice()
    assert statements.invoice_billed_to(bare, org) == statements.Party(name="Acme")
    bare.billed_to = {  # type: ignore[attr-defined]
        "legal_name": "Acme GmbH",
        "address": "1 Main St\nBerlin",
        "tax_id": "DE123456789",
        "emails": ["ap@acme.example"],
    }
    assert statements.invoice_billed_to(bare, org) == statements.Party(
        name="Acme GmbH", address="1 Main St\nBerlin", tax_id="DE123456789", emails=("ap@acme.example",)
    )


@pytest.mark.parametrize(
    ("rate_bps", "total_minor", "tax_minor"),
    [(0, 1200, None), (2000, 1200, 200), (2000, 1, 0), (2000, 3, 1), (1900, 11900, 1900), (700, 10700, 700)],
)
def test_the_tax_included_in_a_total_is_rounded_half_up_to_the_cent(settings, rate_bps, total_minor, tax_minor):
    settings.INVOICE_TAX_RATE_BPS = rate_bps
    tax = statements.invoice_tax(total_minor=total_minor)
    assert (tax.amount_minor if tax else None) == tax_minor


def test_every_period_not_invoiced_yet_is_running_with_the_rounding_carried_through(org):
    month = october_invoiced(org)
    call(org, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # 0.35 on the overdraft, this month
    start, end = period_now()
    now = timezone.now()
    periods = statements.running_periods(organization_id=org.pk, now=now)
    nov = month.invoice.period_end
    # This test's clock is the machine's: October was closed by hand, so November waits for its close (it ended),
    # unless the machine's month is November itself.
    expected = [start] if start == nov else [start, nov]
    assert [p.start for p in periods] == expected
    assert periods[0].end == end and not periods[0].ended
    assert periods[0].charges_nano == usd("0.35")
    if len(periods) == 2:
        assert (periods[1].ended, periods[1].charges_nano, periods[1].carry_in_nano) == (True, 0, usd("0.00045"))
        assert periods[1].total_minor == 0
    assert periods[0].carry_in_nano == usd("0.00045")
    assert periods[0].total_exact_nano == usd("0.35045")
    assert periods[0].due_nano == usd("0.35")


def test_a_running_periods_last_day_is_the_day_before_its_end():
    period = statements.RunningPeriod(
        start=at("2026-10-15 00:00"),
        end=at("2026-11-15 00:00"),
        currency="USD",
        charges_nano=0,
        credit_applied_nano=0,
        carry_in_nano=0,
        total_exact_nano=0,
        total_minor=0,
        ended=False,
    )
    assert period.last_day == date(2026, 11, 14)
