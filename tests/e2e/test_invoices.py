"""In Chromium against the live server: an owner finds an invoice under Billing → Invoices, reads it, downloads its
PDF (a PDF whose text has the number and the total), follows a usage line down to one request and back up, and
follows a request of the usage table up to the invoice line it is on."""

import re
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect
from pypdf import PdfReader

from billing.pricing.services import price_book_seed
from tests.billing.invoicing.explained import october_invoiced
from tests.e2e.test_signup import PASSWORD, log_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def month(live_url, org_a, alice):
    price_book_seed()
    alice.set_password(PASSWORD)
    alice.save()
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    return october_invoiced(org_a)


def test_the_invoices_list_one_invoice_and_its_pdf(live_url, page, month):
    number = month.invoice.number
    log_in(page, live_url, "alice@example.com")
    page.get_by_text("Billing", exact=True).click()
    page.get_by_role("link", name="Invoices").click()
    row = page.get_by_test_id("invoice-row").filter(has_text=number)
    expect(row).to_contain_text("2026-10-01 to 2026-11-01")
    expect(row.get_by_test_id("invoice-due")).to_have_text("$0.55")
    expect(row.get_by_test_id("invoice-status")).to_have_text("open")
    expect(page.get_by_test_id("running-period").first).to_contain_text("Draft")

    row.get_by_role("link", name=number).click()
    expect(page.get_by_role("heading", name=f"Invoice {number}")).to_be_visible()
    expect(page.get_by_test_id("invoice-number")).to_have_text(number)
    expect(page.get_by_test_id("billed-to-name")).to_have_text("Org A")
    expect(page.get_by_test_id("invoice-total")).to_have_text("$0.55")
    expect(page.get_by_test_id("invoice-line")).to_have_count(5)  # four usage lines and the paid credit

    with page.expect_download() as download_info:
        page.get_by_test_id("download-pdf").click()
    download = download_info.value
    assert download.suggested_filename == f"{number}.pdf"
    content = Path(download.path()).read_bytes()
    assert content.startswith(b"%PDF-")
    text = "".join(p.extract_text() for p in PdfReader(download.path()).pages)
    assert number in text
    assert "$0.55" in text


def test_from_an_invoice_line_down_to_one_request_and_back(live_url, page, month):
    summaries = month.records[1]  # the one gpt-4o call tagged "summaries"
    log_in(page, live_url, "alice@example.com")
    page.goto(f"{live_url}/billing/invoices/{month.invoice.pk}/")
    page.get_by_role("link", name="gpt-4o default: input").click()
    expect(page.get_by_role("heading", name=re.compile(r"Line \d+: gpt-4o default: input"))).to_be_visible()
    expect(page.get_by_test_id("line-amount")).to_have_text("$0.75")
    expect(page.get_by_test_id("line-quantity")).to_have_text("300,000 tokens")
    # By day: the 5th has two requests, the 6th one; together the line.
    groups = page.get_by_test_id("line-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_contain_text("2026-10-05")
    expect(groups.nth(0)).to_contain_text("$0.50")
    expect(groups.nth(1)).to_contain_text("$0.25")
    expect(page.get_by_test_id("line-request")).to_have_count(3)

    page.get_by_test_id("by-workflow").click()
    page.get_by_test_id("line-group").filter(has_text="summaries").get_by_role("link").click()
    requests = page.get_by_test_id("line-request")
    expect(requests).to_have_count(1)
    expect(requests).to_contain_text("100,000")
    expect(requests).to_contain_text("$0.25")
    requests.get_by_role("link", name=summaries.request_id).click()

    expect(page.get_by_role("heading", name=f"Request {summaries.request_id}")).to_be_visible()
    expect(page.get_by_test_id("request-charge")).to_have_text("$0.35")
    lines = page.get_by_test_id("request-line")
    expect(lines).to_have_count(2)
    lines.filter(has_text="gpt-4o default: output").click()
    expect(page.get_by_role("heading", name=re.compile(r"Line \d+: gpt-4o default: output"))).to_be_visible()
    expect(page.get_by_test_id("line-amount")).to_have_text("$0.30")
    page.get_by_test_id("back-to-invoice").click()
    expect(page.get_by_test_id("invoice-number")).to_have_text(month.invoice.number)


def test_from_a_request_in_the_usage_table_up_to_its_invoice_line(live_url, page, month):
    mini = month.records[3]
    log_in(page, live_url, "alice@example.com")
    page.goto(f"{live_url}/usage/?start=2026-10-01&end=2026-10-31")
    row = page.locator("tr", has_text="gpt-4o-mini")
    row.get_by_test_id("request-invoice").get_by_role("link", name=month.invoice.number).click()
    expect(page.get_by_role("heading", name=f"Request {mini.request_id}")).to_be_visible()
    page.get_by_test_id("request-line").filter(has_text="gpt-4o-mini default: input").click()
    expect(page.get_by_test_id("line-amount")).to_have_text("$0.00015")
    expect(page.get_by_test_id("line-request")).to_contain_text(mini.request_id)
