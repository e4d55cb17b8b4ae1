"""demo_seed: idempotent, reproducible, and everything it prints works (login, API key, balance)."""

import json
from io import StringIO
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import Client

from accounts.models import ApiKey, Membership, Organization, Role
from accounts.services import apikey_revoke
from billing.ledger.models import Grant
from billing.metering.callers import apikey_authenticate
from billing.pricing.models import AIModel


def seed(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("demo_seed", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_demo_seed_prints_what_the_operator_contract_promises(db):
    result = seed()
    assert {"organization_id", "api_key", "balance", "login"} <= set(result)
    assert result["balance"] == "25.00"
    organization = Organization.objects.get(pk=result["organization_id"])
    key = apikey_authenticate(secret=result["api_key"])
    assert key is not None and key.organization_id == organization.pk
    assert AIModel.objects.filter(slug="demo").exists()
    user = Membership.objects.get(organization=organization, role=Role.OWNER).user
    assert user.email == result["login"]["email"]
    assert EmailAddress.objects.get(user=user).verified


def test_running_it_twice_gives_the_same_organization_key_and_credit(db):
    first, second = seed(), seed()
    assert second == first
    assert Organization.objects.count() == 1 and ApiKey.objects.count() == 1 and Grant.objects.count() == 1
    assert apikey_authenticate(secret=second["api_key"]) is not None


def test_a_revoked_demo_key_is_replaced_by_the_next_working_one(db):
    first = seed()
    apikey_revoke(api_key_id=first["api_key_id"], actor=None)
    second = seed()
    assert second["api_key"] != first["api_key"]
    assert second["organization_id"] == first["organization_id"]
    assert apikey_authenticate(secret=second["api_key"]) is not None
    assert seed()["api_key"] == second["api_key"]


def test_the_key_and_password_derive_from_secret_key(db, settings):
    first = seed()
    settings.SECRET_KEY = "another-secret-key-" * 4
    second = seed()
    assert second["api_key"] != first["api_key"]
    assert second["login"]["password"] != first["login"]["password"]


def test_the_demo_user_logs_in_through_the_web_login(db):
    result = seed()
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": result["login"]["email"], "password": result["login"]["password"]}
    )
    assert response.status_code == 302, response.content[:500]
    assert response["Location"] == "/"
    assert authenticate(username=result["login"]["email"], password=result["login"]["password"]) is not None


def test_staff_flag_makes_the_demo_user_staff(db):
    assert seed()["login"]["staff"] is False
    assert seed("--staff")["login"]["staff"] is True


@pytest.mark.parametrize("email", ["ops@example.com"])
def test_another_email_can_be_used(db, email):
    assert seed("--email", email)["login"]["email"] == email
