"""The notification settings page, the public pricing page and starting another organization."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, Membership, Organization, Role
from billing.notifications.models import NotificationSettings
from billing.pricing.services import model_update, price_version_create
from core.money import parse_amount
from tests.accounts.factories import UserFactory
from tests.web.conftest import client_for
from web.context import SESSION_KEY

SETTINGS = {
    "low_balance_enabled": "on",
    "low_balance_threshold": "12.50",
    "credit_expiring_enabled": "on",
    "credit_expiring_days": "14",
    "email_enabled": "",
}


class TestNotificationSettings:
    def test_owners_and_billing_admins_save_them(self, as_alice, as_bill, org_a):
        for client, threshold in ((as_alice, "12.50"), (as_bill, "$1,000")):
            response = client.post("/settings/notifications/", {**SETTINGS, "low_balance_threshold": threshold})
            assert response.status_code == 302
        prefs = NotificationSettings.objects.get(organization=org_a)
        assert prefs.low_balance_threshold_nano == parse_amount("1000")
        assert (prefs.credit_expiring_days, prefs.email_enabled, prefs.low_balance_enabled) == (14, False, True)
        assert prefs.updated_by.username == "bill@example.com"
        assert AuditEvent.objects.filter(action="notifications.update", organization=org_a).count() == 2
        page = as_alice.get("/settings/notifications/").content.decode()
        assert 'value="1000.00"' in page and 'value="14"' in page

    def test_developers_and_viewers_see_them_but_cannot_save(self, as_bob, as_vera, org_a):
        for client in (as_bob, as_vera):
            page = client.get("/settings/notifications/")
            assert page.status_code == 200 and "Only owners and billing admins" in page.content.decode()
            assert client.post("/settings/notifications/", SETTINGS).status_code == 403
        assert not NotificationSettings.objects.exists()

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"low_balance_threshold": ""}, "This field is required."),
            ({"low_balance_threshold": "-5"}, "greater than zero"),
            ({"low_balance_threshold": "0"}, "greater than zero"),
            ({"low_balance_threshold": "ten"}, "is not a decimal amount"),
            ({"low_balance_threshold": "1000000000000"}, "larger than"),
            ({"credit_expiring_days": "0"}, "greater than or equal to 1"),
            ({"credit_expiring_days": "91"}, "less than or equal to 90"),
            ({"credit_expiring_days": "1.5"}, "Enter a whole number."),
        ],
    )
    def test_bad_input_is_refused_with_a_message_and_writes_nothing(self, as_alice, changes, message):
        response = as_alice.post("/settings/notifications/", {**SETTINGS, **changes})
        assert response.status_code == 400
        assert message in response.content.decode()
        assert not NotificationSettings.objects.exists()


class TestPricing:
    def test_anonymous_visitors_see_every_model_with_its_prices(self, client, book):
        response = client.get("/pricing/")
        assert response.status_code == 200
        page = " ".join(response.content.decode().split())
        for text in (
            'data-model="gpt-4o"',
            "128,000 tokens",
            "$2.50</td>",
            "$1.25</td>",
            "$10.00</td>",
            'data-model="gpt-4o-mini"',
            "$0.075</td>",
            'data-model="text-embedding-3-small"',
            "$0.02</td>",
        ):
            assert text in page, text

    def test_it_follows_the_price_book_in_effect_now(self, client, book):
        price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=2_000_000,
            cached_input_price_micro_per_mtok=1_000_000,
            output_price_micro_per_mtok=8_000_000,
        )
        price_version_create(
            model_slug="gpt-4o-mini",
            input_price_micro_per_mtok=999_000_000,
            cached_input_price_micro_per_mtok=999_000_000,
            output_price_micro_per_mtok=999_000_000,
            effective_from=timezone.now() + timedelta(days=1),
        )
        model_update(
            model_slug="llama-3.1-70b-instruct", status="deprecated", sunset_at=timezone.now() - timedelta(days=1)
        )
        page = client.get("/pricing/").content.decode()
        assert "$8.00</td>" in page and "$10.00</td>" not in page  # the new gpt-4o price, not the old one
        assert "$999.00" not in page  # a future price is not shown yet
        assert 'data-model="llama-3.1-70b-instruct"' not in page  # gone past its sunset


class TestNewOrganization:
    def test_creates_it_owned_by_the_user_and_switches_to_it(self, as_bob, bob):
        response = as_bob.post("/organizations/new/", {"name": "Bob's side project"})
        assert response.status_code == 302
        org = Organization.objects.get(name="Bob's side project")
        assert Membership.objects.get(user=bob, organization=org).role == Role.OWNER
        assert as_bob.session[SESSION_KEY] == org.pk

    @pytest.mark.parametrize(("name", "message"), [("", "This field is required."), ("x" * 201, "at most 200")])
    def test_bad_names(self, as_bob, name, message):
        response = as_bob.post("/organizations/new/", {"name": name})
        assert response.status_code == 400 and message in response.content.decode()
        assert Organization.objects.count() == 1

    def test_someone_without_any_organization_is_sent_here(self, db):
        client = client_for(UserFactory(username="loner@example.com"))
        response = client.get("/")
        assert response.status_code == 302 and response["Location"] == "/organizations/new/"
        assert "Create an organization" in client.get("/organizations/new/").content.decode()

    def test_anonymous(self, db):
        assert Client().post("/organizations/new/", {"name": "x"}).status_code == 302
        assert not Organization.objects.exists()
