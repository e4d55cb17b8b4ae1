"""In a real browser: a key created on the keys page works against /v1/balance, and stops working once revoked
on the page."""

import time

import httpx
import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect

from tests.e2e.test_signup import log_in

pytestmark = pytest.mark.e2e


def balance(live_url: str, secret: str) -> int:
    return httpx.get(f"{live_url}/v1/balance", headers={"Authorization": f"Bearer {secret}"}).status_code


def test_create_copy_use_and_revoke_a_key(live_url, page, org_a, bob):
    bob.set_password("correct horse battery staple")
    bob.save()
    EmailAddress.objects.create(user=bob, email=bob.email, verified=True, primary=True)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    log_in(page, live_url, bob.email)

    page.get_by_role("link", name="API keys").click()
    page.get_by_test_id("new-key").click()
    page.get_by_label("Name").fill("deploy bot")
    page.get_by_label("Workflow label").fill("ci")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_test_id("api-key-secret").input_value()
    assert shown.startswith("sk-tb-")
    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text("Copied")
    secret = page.evaluate("navigator.clipboard.readText()")
    assert secret == shown

    assert balance(live_url, secret) == 200

    page.get_by_role("link", name="Done").click()
    row = page.locator("tr", has_text="deploy bot")
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    expect(row).to_contain_text(secret[:18])  # the prefix and public id, never the whole secret
    row.get_by_role("link", name="Revoke").click()
    page.get_by_test_id("confirm-revoke").click()
    expect(page.locator("tr", has_text="deploy bot").get_by_test_id("key-status")).to_have_text("revoked")

    # Revocation reaches every cache layer within seconds.
    deadline = time.monotonic() + 10
    while (status := balance(live_url, secret)) != 401:
        assert time.monotonic() < deadline, f"still {status} after revocation"
        time.sleep(0.25)
