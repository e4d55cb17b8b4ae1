"""Billing details in Chromium: an owner fills them in on /billing/details/, and the next invoice closed is billed
to them (the staff API shows its billed_to); a later change reaches the invoice after, never the one issued."""

import pytest
import time_machine
from django.test import Client
from playwright.sync_api import expect

from billing.invoicing import services
from billing.invoicing.models import Invoice
from billing.ledger import services as ledger
from tests.accounts.factories import UserFactory
from tests.billing.invoicing.conftest import at

# The payments fixtures (eager Celery: the details' Stripe sync runs when saved), imported so pytest finds them.
# ruff: noqa: F811
from tests.billing.payments.fixtures import _payments_hygiene, eager_celery  # noqa: F401
from tests.billing.payments.helpers import browser_login, customer_create

pytestmark = pytest.mark.e2e


def fill(page, **fields: str) -> None:
    for name, value in fields.items():
        page.locator(f"#billing-details [name={name}]").fill(value)


def close_next(organization_id: int, moment: str) -> Invoice:
    """Close the organization's next period, at a moment after it ended (grace included)."""
    with time_machine.travel(at(moment), tick=False):
        start, _ = services.period_next(organization_id=organization_id)
        return services.invoice_close(organization_id=organization_id, period_start=start)


def staff_billed_to(invoice: Invoice) -> dict:
    staff = Client()
    staff.force_login(UserFactory(username="dana@operator.example", is_staff=True))
    response = staff.get(f"/api/staff/invoices/{invoice.pk}/")
    assert response.status_code == 200
    return response.json()["billed_to"]


def test_a_billing_details_change_appears_on_the_next_invoice(live_url, page, localstripe, eager_celery):
    _, organization = customer_create("erin@example.com")
    # The wallet opens in December 2026: its first period ends on 2027-01-01.
    with time_machine.travel(at("2026-12-06 12:00"), tick=False):
        ledger.wallet_get_or_create(organization_id=organization.pk)
    browser_login(page, live_url, "erin@example.com", next_path="/billing/details/")
    expect(page.get_by_test_id("billing-recipients")).to_contain_text("erin@example.com")
    fill(
        page,
        legal_name="Acme Corporation",
        address_line1="1 Main Street",
        city="Springfield",
        postal_code="62701",
        region="IL",
        tax_id_value="04-2103594",
        emails="ap@acme.example",
    )
    page.get_by_label("Country").select_option("US")
    page.get_by_label("Tax ID type").select_option("us_ein")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("billing-details-current")).to_contain_text("Acme Corporation")
    expect(page.get_by_test_id("billing-details-tax-id")).to_have_text("04-2103594")
    expect(page.get_by_test_id("billing-recipients")).to_contain_text("ap@acme.example")

    december = close_next(organization.pk, "2027-01-01 01:00:01")
    assert december.status == "finalized"
    billed_to = staff_billed_to(december)
    assert billed_to["legal_name"] == "Acme Corporation"
    assert billed_to["address"]["country"] == "US" and billed_to["address"]["region"] == "IL"
    assert billed_to["tax_id"] == {"type": "us_ein", "value": "04-2103594"}
    assert billed_to["emails"] == ["ap@acme.example"]

    # A bad tax ID is refused on the page, and nothing changes.
    fill(page, tax_id_value="12-34")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".has-error")).to_contain_text("not a valid US EIN")
    # A change now reaches the next invoice, not the one already issued.
    fill(page, tax_id_value="04-2103594", legal_name="Acme Holdings Inc.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("billing-details-current")).to_contain_text("Acme Holdings Inc.")
    january = close_next(organization.pk, "2027-02-01 01:00:01")
    assert staff_billed_to(january)["legal_name"] == "Acme Holdings Inc."
    assert staff_billed_to(december)["legal_name"] == "Acme Corporation"
