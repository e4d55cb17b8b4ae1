"""The staff pricing console in a real browser: log in, schedule a price, see it listed, preview it for an
organization, and cancel it."""

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone

from billing.pricing import services
from billing.pricing.models import PriceVersion
from tests.accounts.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.e2e


def test_staff_schedule_preview_and_cancel_a_price(live_url, page):
    services.price_book_seed()
    sam = UserFactory(username="sam@staff.example.com", is_staff=True)
    EmailAddress.objects.create(user=sam, email=sam.email, verified=True, primary=True)
    organization = OrganizationFactory(name="Acme Labs")

    page.goto(f"{live_url}/staff/pricing/")
    # Staff pages send a stranger to the site's log-in page first (the Django admin is not served).
    page.fill("input[name=login]", "sam@staff.example.com")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=models-table]")
    assert page.locator("tr[data-model=gpt-4o-mini]").inner_text().count("$0.15") == 1

    page.click("text=gpt-4o-mini")
    when = (timezone.now() + timezone.timedelta(days=14)).strftime("%Y-%m-%d 00:00")
    form = page.locator("[data-testid=version-form]")
    form.locator("input[name=input_price]").fill("0.12")
    form.locator("input[name=output_price]").fill("0.48")
    form.locator("input[name=effective_from]").fill(when)
    form.locator("input[name=note]").fill("spring price cut")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("text=New prices for gpt-4o-mini take effect from")
    version = PriceVersion.objects.get(note="spring price cut")

    page.get_by_role("link", name="Models & prices").click()
    page.wait_for_selector("[data-testid=models-table]")
    assert "$0.12 / $0.48 from" in page.locator("tr[data-model=gpt-4o-mini]").inner_text()

    page.get_by_role("link", name="Preview").click()
    page.wait_for_selector("[data-testid=preview-form]")
    preview = page.locator("[data-testid=preview-form]")
    preview.locator("select[name=organization]").select_option(str(organization.pk))
    preview.locator("select[name=model]").select_option("gpt-4o-mini")
    preview.locator("input[name=input_tokens]").fill("1000000")
    preview.locator("input[name=output_tokens]").fill("1000000")
    preview.locator("select[name=price_version]").select_option(str(version.pk))
    preview.locator("button[type=submit]").click()
    # Now $0.15 + $0.60; under the scheduled version $0.12 + $0.48.
    assert page.locator("[data-testid=current-total]").inner_text() == "$0.75"
    assert page.locator("[data-testid=draft-total]").inner_text() == "$0.60"

    page.goto(f"{live_url}/staff/pricing/models/gpt-4o-mini/")
    page.click(f"[data-testid=cancel-{version.pk}]")
    page.wait_for_selector("text=is cancelled")
    version.refresh_from_db()
    assert version.cancelled_at is not None
