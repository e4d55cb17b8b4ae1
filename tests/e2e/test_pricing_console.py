"""The staff pricing console in a real browser: log in, schedule a price through its confirmation page, see it
listed, preview it for an organization, cancel it, publish a price now, and read both in the audit log."""

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
    form.locator("input[name=start][value=at]").check()
    form.locator("input[name=effective_from]").fill(when)
    form.locator("input[name=note]").fill("spring price cut")
    form.locator("button[type=submit]").click()
    # The confirmation page: current and new prices side by side, when they start, and nothing written yet.
    page.wait_for_selector("[data-testid=confirm-table]")
    assert f"{when} UTC" in page.locator("[data-testid=confirm-start]").inner_text()
    row = page.locator("[data-testid=confirm-table] tr[data-kind=Input]").inner_text()
    assert "$0.15" in row and "$0.12" in row and "-20.0%" in row
    assert not PriceVersion.objects.filter(note="spring price cut").exists()
    page.click("[data-testid=publish]")
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
    page.fill(f"#cancel-reason-{version.pk}", "finance wants another week")
    page.click(f"[data-testid=cancel-{version.pk}]")
    page.wait_for_selector("text=is cancelled")
    version.refresh_from_db()
    assert version.cancelled_at is not None


def test_staff_publish_now_with_confirmation_and_read_the_audit_log(live_url, page):
    services.price_book_seed()
    staff = UserFactory(username="sam@staff.example.com", email="sam@staff.example.com", is_staff=True)
    organization = OrganizationFactory(name="Acme Labs")
    services.override_create(
        organization_id=organization.pk, model="gpt-4o", discount_bps=1500, reason="contract #42", actor=staff
    )

    EmailAddress.objects.create(user=staff, email=staff.email, verified=True, primary=True)
    page.goto(f"{live_url}/staff/pricing/models/gpt-4o-mini/")
    page.fill("input[name=login]", "sam@staff.example.com")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    form = page.locator("[data-testid=version-form]")
    form.locator("input[name=input_price]").fill("0.10")
    form.locator("input[name=output_price]").fill("0.40")
    form.locator("input[name=note]").fill("match the competition")
    form.locator("button[type=submit]").click()  # "Now" is the default start
    page.wait_for_selector("[data-testid=confirm-table]")
    assert "now" in page.locator("[data-testid=confirm-start]").inner_text()
    # Cancelling the confirmation writes nothing.
    page.click("[data-testid=cancel-publish]")
    page.wait_for_selector("[data-testid=version-form]")
    assert not PriceVersion.objects.filter(note="match the competition").exists()

    form.locator("input[name=input_price]").fill("0.10")
    form.locator("input[name=output_price]").fill("0.40")
    form.locator("input[name=note]").fill("match the competition")
    form.locator("button[type=submit]").click()
    page.click("[data-testid=publish]")
    page.wait_for_selector("text=New prices for gpt-4o-mini take effect now")
    version = PriceVersion.objects.get(note="match the competition")

    page.get_by_role("link", name="Audit log").click()
    page.wait_for_selector("[data-testid=audit-table]")
    entry = page.locator(f"tr[data-event]:has-text('PriceVersion:{version.pk}')")
    text = entry.inner_text()
    assert "sam@staff.example.com" in text and "match the competition" in text
    assert f"price version #{version.pk}" in text and "gpt-4o-mini" in text
    assert "$0.15 / M tokens → $0.10 / M tokens" in text and "$0.60 / M tokens → $0.40 / M tokens" in text

    # Filter by organization: only the negotiated price of Acme Labs is left.
    filters = page.locator("[data-testid=audit-filters]")
    filters.locator("select[name=organization]").select_option(str(organization.pk))
    filters.locator("button[type=submit]").click()
    page.wait_for_selector("text=Clear")
    reasons = page.locator("[data-testid=audit-reason]").all_inner_texts()
    assert reasons == ["contract #42"]
    assert "Acme Labs" in page.locator("[data-testid=audit-table]").inner_text()
