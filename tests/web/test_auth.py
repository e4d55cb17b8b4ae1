"""Accounts over HTTP: sign-up with verification, log in, password reset, and the limits on password guessing."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.test import Client

from accounts.models import Membership, Organization, Role

PASSWORD = "correct horse battery staple"


def link(message, pattern: str) -> str:
    match = re.search(rf"https?://[^/\s]+({pattern})", message.body)
    assert match, message.body
    return match.group(1)


def signup(client: Client, **fields: str):
    data = {"email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD, **fields}
    return client.post("/accounts/signup/", data)


class TestSignUp:
    def test_creates_the_user_and_their_organization_and_asks_to_verify(self, db):
        client = Client()
        response = signup(client, organization_name="Erin Labs")
        assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
        user = User.objects.get(email="erin@example.com")
        membership = Membership.objects.get(user=user)
        assert (membership.organization.name, membership.role) == ("Erin Labs", Role.OWNER)
        assert "Check your email" in client.get("/accounts/confirm-email/").content.decode()
        # Not logged in until verified.
        assert client.get("/").status_code == 302
        [message] = mail.outbox
        assert message.subject.startswith("[Token Billing] ")
        confirm = link(message, r"/accounts/confirm-email/[^/\s]+/")
        assert "Confirm your email address" in client.get(confirm).content.decode()
        response = client.post(confirm)
        assert response.status_code == 302
        assert EmailAddress.objects.get(user=user).verified
        assert client.get("/").status_code == 200

    def test_an_empty_organization_name_uses_the_email(self, db):
        signup(Client())
        assert Organization.objects.get().name == "erin@example.com"

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"email": "not-an-email"}, "Enter a valid email address."),
            ({"password2": "something else entirely"}, "You must type the same password each time."),
            ({"password1": "password", "password2": "password"}, "This password is too common."),
            ({"password1": "12345678901", "password2": "12345678901"}, "This password is entirely numeric."),
            ({"organization_name": "x" * 201}, "Ensure this value has at most 200 characters"),
        ],
    )
    def test_bad_input_is_refused_with_a_message_and_writes_nothing(self, db, fields, message):
        response = signup(Client(), **fields)
        assert response.status_code == 200
        assert message in response.content.decode()
        assert not User.objects.exists() and not Organization.objects.exists()

    def test_a_bad_confirmation_link_says_so(self, db):
        response = Client().get("/accounts/confirm-email/not-a-key/")
        assert "This confirmation link has expired or is not valid." in response.content.decode()


@pytest.fixture
def erin(db) -> User:
    user = User.objects.create_user("erin@example.com", "erin@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Organization.objects.create(name="Erin Labs").memberships.create(user=user, role=Role.OWNER)
    return user


def log_in(client: Client, email: str = "erin@example.com", password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


class TestLogIn:
    def test_log_in_and_out(self, erin):
        client = Client()
        response = log_in(client)
        assert response.status_code == 302 and response["Location"] == "/"
        assert "Erin Labs" in client.get("/").content.decode()
        assert client.post("/accounts/logout/").status_code == 302
        assert client.get("/").status_code == 302

    def test_a_wrong_password_gets_a_message(self, erin):
        response = log_in(Client(), password="wrong")
        assert response.status_code == 200
        assert "The email address and/or password you specified are not correct." in response.content.decode()

    def test_five_failures_lock_the_account_even_for_the_right_password(self, erin, db):
        """Against guessing one account's password: 5 failures per 5 minutes per address (allauth's limit, in the
        cache shared by every web process)."""
        for _ in range(5):
            log_in(Client(), password="guess")
        response = log_in(Client())
        assert response.status_code == 200
        assert "Too many failed login attempts. Try again later." in response.content.decode()
        # Another account from the same address is not affected by this one's lock.
        other = User.objects.create_user("fred@example.com", "fred@example.com", PASSWORD)
        EmailAddress.objects.create(user=other, email=other.email, verified=True, primary=True)
        assert log_in(Client(), "fred@example.com").status_code == 302

    def test_ten_failures_from_one_address_block_it_for_every_account(self, erin):
        """Against guessing across many accounts: 10 failures per minute per client address."""
        for n in range(10):
            log_in(Client(), f"nobody{n}@example.com", "guess")
        response = log_in(Client())
        assert "Too many failed login attempts" in response.content.decode()
        # From another address the account is fine.
        assert log_in(Client(REMOTE_ADDR="203.0.113.7")).status_code == 302

    def test_after_ten_failures_every_attempt_from_the_address_is_refused(self, erin):
        """The throttle counts failures, not attempts (allauth's 30 attempts a minute per address is replaced by it):
        from the eleventh failure on, nothing from the address is even checked."""
        client = Client(REMOTE_ADDR="198.51.100.1")
        pages = [log_in(client, f"x{n}@example.com", "guess").content.decode() for n in range(30)]
        assert not any("Too many failed login attempts" in page for page in pages[:10])
        assert all("Too many failed login attempts" in page for page in pages[10:])
        assert "Too many failed login attempts" in log_in(client).content.decode()

    def test_a_successful_log_in_does_not_reset_the_per_account_count(self, erin):
        for _ in range(4):
            log_in(Client(), password="guess")
        assert log_in(Client()).status_code == 302
        log_in(Client(), password="guess")
        assert "Too many failed login attempts" in log_in(Client()).content.decode()


class TestPasswordReset:
    def test_request_follow_the_link_and_choose_a_new_password(self, erin):
        client = Client()
        response = client.post("/accounts/password/reset/", {"email": "ERIN@example.com"})
        assert response.status_code == 302
        assert "Check your email" in client.get(response["Location"]).content.decode()
        [message] = mail.outbox
        key_url = link(message, r"/accounts/password/reset/key/\S+/")
        response = client.get(key_url)
        assert response.status_code == 302  # allauth moves the key from the URL into the session
        form_url = response["Location"]
        mismatch = client.post(form_url, {"password1": "a brand new passphrase", "password2": "another one"})
        assert "You must type the same password each time." in mismatch.content.decode()
        response = client.post(form_url, {"password1": "a brand new passphrase", "password2": "a brand new passphrase"})
        assert response.status_code == 302
        assert "Password changed" in client.get(response["Location"]).content.decode()
        assert log_in(Client(), password=PASSWORD).status_code == 200  # the old one no longer works
        assert log_in(Client(), password="a brand new passphrase").status_code == 302
        # The link works once.
        assert "This link does not work" in Client().get(key_url, follow=True).content.decode()

    def test_unknown_addresses_look_the_same_and_get_no_link(self, db):
        response = Client().post("/accounts/password/reset/", {"email": "nobody@example.com"})
        assert response.status_code == 302
        assert all("/accounts/password/reset/key/" not in m.body for m in mail.outbox)

    def test_requests_for_one_address_are_limited(self, erin):
        statuses = [
            Client().post("/accounts/password/reset/", {"email": "erin@example.com"}).status_code for _ in range(6)
        ]
        assert statuses == [302] * 5 + [429]
        assert (
            "Too many attempts"
            in Client().post("/accounts/password/reset/", {"email": "erin@example.com"}).content.decode()
        )
        assert len(mail.outbox) == 5

    def test_bad_input(self, db):
        response = Client().post("/accounts/password/reset/", {"email": "not an email"})
        assert response.status_code == 200 and "Enter a valid email address." in response.content.decode()


def test_a_staff_member_made_with_createsuperuser_logs_in_on_the_site_after_confirming_their_email(db, monkeypatch):
    """With the admin not served, staff log in where everyone does; allauth asks them to confirm the address first."""
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", interactive=False, username="sam", email="sam@operator.example", verbosity=0)
    client = Client()
    response = log_in(client, "sam@operator.example")
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    [message] = mail.outbox
    response = client.post(link(message, r"/accounts/confirm-email/[^/\s]+/"))
    assert response.status_code == 302
    assert client.get("/staff/pricing/").status_code == 200
