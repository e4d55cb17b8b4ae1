"""The staff invoices console in a real browser: find an organization's invoice by filters, open it, void it with a
reason, and see its credit note and the action in the audit trail."""

import pytest
import time_machine
from allauth.account.models import EmailAddress

from billing.invoicing import services
from billing.invoicing.models import Invoice
from billing.ledger.models import Wallet
from billing.pricing import services as pricing
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.billing.invoicing.conftest import at
from tests.billing.invoicing.test_close import OCT, october

pytestmark = pytest.mark.e2e


def test_staff_void_an_invoice_from_the_console(live_url, page):
    pricing.price_book_seed()
    organization = OrganizationFactory(name="Acme Labs")
    october(organization)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=organization.pk, period_start=OCT)
    sam = UserFactory(username="sam@staff.example.com", is_staff=True)
    EmailAddress.objects.create(user=sam, email=sam.email, verified=True, primary=True)

    page.goto(f"{live_url}/staff/invoices/")
    page.fill("input[name=login]", "sam@staff.example.com")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=invoices-table]")
    filters = page.locator("[data-testid=invoice-filters]")
    filters.locator("select[name=organization]").select_option(str(organization.pk))
    filters.locator("select[name=status]").select_option("finalized")
    filters.locator("input[name=period]").fill("2026-10")
    filters.locator("button[type=submit]").click()
    page.wait_for_selector(f"tr[data-invoice='{invoice.pk}']")
    page.click("text=INV-2026-000001")
    page.wait_for_selector("[data-testid=lines-table]")
    assert page.locator("[data-testid=invoice-due]").inner_text() == "0.15 USD"

    void = page.locator("[data-testid=void-form]")
    void.locator("input[name=reason]").fill("Billed in error")
    void.locator("button[type=submit]").click()
    page.wait_for_selector("text=is void; credit note CN-2026-000001")
    assert page.locator("[data-testid=invoice-status]").inner_text() == "Void"
    assert "CN-2026-000001" in page.locator("[data-testid=credit-notes]").inner_text()
    assert "Billed in error" in page.locator("[data-testid=invoice-events]").inner_text()
    # The void form is gone from a void invoice; the credit note opens with the lines it reverses.
    assert page.locator("[data-testid=void-form]").count() == 0
    page.click("[data-testid=credit-notes] >> text=CN-2026-000001")
    page.wait_for_selector("[data-testid=lines-table]")
    assert page.locator("[data-testid=invoice-total]").inner_text() == "-0.15 USD"
    assert "reverses line 1" in page.locator("[data-testid=lines-table]").inner_text()
    assert Invoice.objects.get(pk=invoice.pk).status == "void"
    assert Wallet.objects.get(organization=organization).unfunded_nano == 0
