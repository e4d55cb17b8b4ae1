"""In a real browser against the live server: sign up, verify the email, log in, see the dashboard; and join an
organization through an emailed invitation."""

import re
import time

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from accounts.models import Membership, Role
from accounts.services import invitation_create

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


def wait_for_mail(count: int, timeout: float = 10.0) -> None:
    """The live server sends from its own thread; the test email backend collects in django.core.mail.outbox."""
    deadline = time.monotonic() + timeout
    while len(mail.outbox) < count:
        assert time.monotonic() < deadline, f"expected {count} emails, got {len(mail.outbox)}"
        time.sleep(0.05)


def link_in(body: str, path: str) -> str:
    match = re.search(rf"https?://\S+{path}\S*", body)
    assert match, body
    return match.group(0)


def log_in(page: Page, live_url: str, email: str) -> None:
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_url}/")


def test_sign_up_verify_log_in_and_see_the_dashboard(live_url, page):
    page.goto(f"{live_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").fill("erin@example.com")
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.get_by_label("Organization name").fill("Erin Labs")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    wait_for_mail(1)
    page.goto(link_in(mail.outbox[0].body, "/accounts/confirm-email/"))
    page.get_by_test_id("confirm-email").click()
    expect(page).to_have_url(f"{live_url}/")
    expect(page.get_by_test_id("balance-available")).to_have_text("$0.00")
    expect(page.get_by_test_id("current-org")).to_have_text("Erin Labs")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_url}/accounts/login/")
    log_in(page, live_url, "erin@example.com")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_test_id("balance-available")).to_have_text("$0.00")


def test_a_wrong_password_is_refused_on_the_page(live_url, page):
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("guess")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not correct")


def test_an_invited_person_signs_up_from_the_link_and_joins(live_url, page, org_a, alice, settings):
    settings.SITE_URL = live_url  # the link in the email is built from SITE_URL
    invitation_create(organization_id=org_a.pk, email="dana@example.com", role=Role.DEVELOPER, actor=alice)
    wait_for_mail(1)
    page.goto(link_in(mail.outbox[0].body, "/invitations/"))
    expect(page.get_by_role("heading", name="Join Org A")).to_be_visible()
    page.get_by_role("link", name="Sign up to join").click()
    expect(page.get_by_label("Email")).to_have_value("dana@example.com")
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{live_url}/")
    expect(page.get_by_test_id("current-org")).to_have_text("Org A")
    page.get_by_role("link", name="Members").click()
    expect(page.locator('tr[data-member="dana@example.com"]')).to_contain_text("Developer")
    assert Membership.objects.get(user__email="dana@example.com").organization_id == org_a.pk
