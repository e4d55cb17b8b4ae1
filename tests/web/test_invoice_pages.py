"""The invoice pages: every member reads the organization's invoices, only owners and billing admins get payment
actions, another organization's invoice, line or request is a 404, bad query parameters are a 400 with a message,
the PDF is a PDF with the number and total, the CSV has every line, and "explain my bill" reads in few queries."""

import csv
import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from billing.invoicing.models import Invoice, InvoiceLine, LineKind
from billing.invoicing.selectors import lines_traced
from billing.invoicing.services.credit_notes import LineCredit, credit_note_issue
from tests.billing.invoicing.conftest import call
from tests.billing.invoicing.explained import october_invoiced

HOSTED = "https://invoice.stripe.example/i/acct_1/test_abc"


@pytest.fixture
def month(book, org_a):
    month = october_invoiced(org_a)
    Invoice.objects.filter(pk=month.invoice.pk).update(hosted_invoice_url=HOSTED)
    month.invoice.refresh_from_db()
    return month


def usage_line(invoice: Invoice, model: str = "gpt-4o", token_kind: str = "input") -> InvoiceLine:
    return InvoiceLine.objects.get(invoice=invoice, kind=LineKind.USAGE, model__slug=model, token_kind=token_kind)


def test_every_member_sees_the_invoices_and_only_billing_roles_the_payment_link(
    month, as_alice, as_bill, as_bob, as_vera
):
    for client, can_pay in ((as_alice, True), (as_bill, True), (as_bob, False), (as_vera, False)):
        listing = client.get(reverse("billing_invoices"))
        page = client.get(reverse("billing_invoice", args=[month.invoice.pk]))
        assert (listing.status_code, page.status_code) == (200, 200)
        assert month.invoice.number in listing.content.decode()
        assert "$0.55" in page.content.decode()
        for response in (listing, page):
            assert (HOSTED in response.content.decode()) is can_pay
            assert ('data-testid="pay-on-stripe"' in response.content.decode()) is can_pay


def test_the_list_shows_the_running_period_with_its_total_so_far(month, org_a, as_alice):
    call(org_a, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # 0.35, on the overdraft, this month
    body = as_alice.get(reverse("billing_invoices")).content.decode()
    assert 'data-testid="running-period"' in body
    assert "Draft: this period" in body
    assert "$0.35" in body


def test_the_invoice_reads_like_an_invoice(month, org_a, as_alice, settings):
    settings.INVOICE_ISSUER_NAME = "Token Billing Ltd"
    settings.INVOICE_ISSUER_ADDRESS = "1 Issuer Way\nLondon"
    settings.INVOICE_ISSUER_TAX_ID = "GB123456789"
    settings.INVOICE_TAX_RATE_BPS = 2000
    body = as_alice.get(reverse("billing_invoice", args=[month.invoice.pk])).content.decode()
    for text in (
        "Token Billing Ltd",
        "1 Issuer Way<br>London",
        "GB123456789",
        "Org A",  # billed to: the organization's name (no billing details snapshot)
        month.invoice.number,
        "2026-10-01 00:00 to 2026-11-01 00:00 UTC",
        "Paid credit applied",
        "-$0.50",
        "$1.05045",  # charges
        "$0.55",  # total due
        "of which VAT (20%)",
        "$0.09",  # 0.55 x 20 / 120 = 0.0917
        "$0.00045",  # rounding carried to the next invoice
    ):
        assert text in body, text
    line = usage_line(month.invoice)
    assert reverse("billing_invoice_line", args=[month.invoice.pk, line.pk]) in body


def test_the_pdf_is_a_pdf_with_the_number_and_the_total(month, as_bob):
    response = as_bob.get(reverse("billing_invoice_pdf", args=[month.invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{month.invoice.number}.pdf"'
    assert response.content.startswith(b"%PDF-")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert month.invoice.number in text
    assert "$0.55" in text
    assert "gpt-4o default: input" in text


def test_the_csv_has_every_line_and_they_add_up_to_the_total(month, as_vera):
    response = as_vera.get(reverse("billing_invoice_lines_csv", args=[month.invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == InvoiceLine.objects.filter(invoice=month.invoice).count()
    total = sum(int(row["amount_nano"]) for row in rows if row["kind"] not in ("refund", "dispute"))
    assert total == month.invoice.total_exact_nano
    assert {row["invoice"] for row in rows} == {month.invoice.number}


@pytest.mark.parametrize("name", ["billing_invoice", "billing_invoice_pdf", "billing_invoice_lines_csv"])
def test_another_organizations_invoice_is_404(month, as_charlie, name):
    assert as_charlie.get(reverse(name, args=[month.invoice.pk])).status_code == 404
    assert as_charlie.get(reverse(name, args=[month.invoice.pk + 1000])).status_code == 404


def test_another_organizations_line_and_request_are_404(month, as_charlie, as_alice):
    line = usage_line(month.invoice)
    assert as_charlie.get(reverse("billing_invoice_line", args=[month.invoice.pk, line.pk])).status_code == 404
    assert as_charlie.get(reverse("billing_request", args=[month.records[0].pk])).status_code == 404
    # A line of the right organization under another invoice id is not found either.
    assert as_alice.get(reverse("billing_invoice_line", args=[month.invoice.pk + 1, line.pk])).status_code == 404
    assert as_alice.get(reverse("billing_request", args=[month.records[-1].pk + 1000])).status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("by=month", "by must be one of day, key, workflow"),
        ("day=2026-13-01", "day must be a date"),
        ("key=abc", "key must be an API key"),
        ("key=-1", "key must be an API key"),
        ("page=0", "page must be a whole number"),
        ("page=x", "page must be a whole number"),
        ("workflow=" + "w" * 101, "workflow must be at most 100 characters"),
    ],
)
def test_bad_query_parameters_are_400_with_a_message(month, as_alice, query, message):
    line = usage_line(month.invoice)
    response = as_alice.get(reverse("billing_invoice_line", args=[month.invoice.pk, line.pk]) + "?" + query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_bad_page_of_the_list_is_400(month, as_alice):
    response = as_alice.get(reverse("billing_invoices") + "?page=-2")
    assert response.status_code == 400
    assert "page must be a whole number" in response.content.decode()


def test_explaining_a_line_shows_its_groups_and_requests_in_a_fixed_number_of_queries(
    month, org_a, as_alice, django_assert_max_num_queries
):
    line = usage_line(month.invoice)
    url = reverse("billing_invoice_line", args=[month.invoice.pk, line.pk])
    with django_assert_max_num_queries(12):
        body = as_alice.get(url + "?by=workflow").content.decode()
    assert "summaries" in body
    for record in month.records[:3]:
        assert record.request_id in body
    assert month.records[3].request_id not in body  # gpt-4o-mini: another line
    filtered = as_alice.get(url + f"?by=key&key={month.notebook.pk}").content.decode()
    assert month.records[2].request_id in filtered
    assert month.records[0].request_id not in filtered


def test_the_usage_table_links_each_request_to_its_invoice_or_says_it_is_not_invoiced_yet(month, org_a, as_bob):
    call(org_a, model="gpt-4o-mini")
    body = as_bob.get(reverse("usage") + "?start=2026-10-01&end=2026-12-31").content.decode()
    assert body.count(month.invoice.number) == 4
    assert body.count("not invoiced yet: current period") == 1
    request_page = as_bob.get(reverse("billing_request", args=[month.records[0].pk])).content.decode()
    lines = lines_traced(InvoiceLine.objects.filter(invoice=month.invoice))
    for line in lines.filter(traced_usage_ids__contains=[month.records[0].pk]):
        assert reverse("billing_invoice_line", args=[month.invoice.pk, line.pk]) in request_page
    assert "gpt-4o default: output" in request_page


def test_the_list_and_the_invoice_read_in_a_fixed_number_of_queries(month, as_alice, django_assert_max_num_queries):
    # Session, user and membership, the unpaid-invoice banner, the page's own reads (the list: invoices, wallet,
    # periods, profile, the previous invoice and one total per running period).
    with django_assert_max_num_queries(14):
        assert as_alice.get(reverse("billing_invoices")).status_code == 200
    with django_assert_max_num_queries(10):
        assert as_alice.get(reverse("billing_invoice", args=[month.invoice.pk])).status_code == 200


def test_a_credit_note_is_listed_and_reads_as_a_credit_note_for_its_invoice(month, as_alice):
    line = usage_line(month.invoice)
    note = credit_note_issue(
        invoice_id=month.invoice.pk,
        lines=[LineCredit(position=line.position)],
        reason="the model answered badly",
        idempotency_key="cn-1",
        actor="staff",
    ).credit_note
    listing = as_alice.get(reverse("billing_invoices"))
    assert listing.status_code == 200
    assert note.number in listing.content.decode() and "(credit note)" in listing.content.decode()
    page = as_alice.get(reverse("billing_invoice", args=[note.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert f"Credit note {note.number}" in body and month.invoice.number in body
