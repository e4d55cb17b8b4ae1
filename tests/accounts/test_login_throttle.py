"""One throttle for every way in (accounts.login_throttle): the web log-in, the Django admin when it is served, and
the staff API's tokens count failures together, per client address and per account."""

import importlib
from collections.abc import Iterator

import pytest
import redis
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import clear_url_caches
from rest_framework.test import APIClient

import config.urls
from accounts.login_throttle import KEY_PREFIX
from tests.accounts.factories import UserFactory
from tests.api.staff.conftest import staff_token_for

PASSWORD = "correct horse battery staple"
LOCKED = "Too many failed login attempts"


@pytest.fixture
def sam(db: None) -> User:
    """A staff member whose username is not their email (as for users made with createsuperuser)."""
    user = UserFactory(username="sam", email="sam@operator.example", is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def _urls_reload() -> None:
    importlib.reload(config.urls)
    clear_url_caches()


@pytest.fixture
def admin_served(settings: pytest.FixtureRequest) -> Iterator[None]:
    settings.ADMIN_ENABLED = True  # type: ignore[attr-defined]
    _urls_reload()
    yield
    settings.ADMIN_ENABLED = False  # type: ignore[attr-defined]
    _urls_reload()


def admin_log_in(client: Client, username: str = "sam", password: str = PASSWORD) -> bool:
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


def web_log_in(client: Client, login: str = "sam@operator.example", password: str = PASSWORD) -> str:
    return client.post("/accounts/login/", {"login": login, "password": password}).content.decode()


class TestTheAdmin:
    def test_is_not_served_unless_enabled_and_its_login_address_leads_to_the_site_login(self, sam):
        client = Client()
        assert client.get("/admin/").status_code == 404
        assert client.post("/admin/login/", {"username": "sam", "password": PASSWORD}).status_code == 302
        assert "_auth_user_id" not in client.session
        response = client.get("/admin/login/?next=/staff/pricing/")
        assert (response.status_code, response["Location"]) == (302, "/accounts/login/?next=/staff/pricing/")
        # The staff console sends anonymous visitors there (staff_member_required), and so to the site's log-in.
        assert client.get("/staff/pricing/", follow=True).request["PATH_INFO"] == "/accounts/login/"

    def test_sixty_wrong_passwords_then_the_right_one_does_not_log_in(self, sam, admin_served):
        assert admin_log_in(Client())  # the admin is really there
        for n in range(60):
            assert not admin_log_in(Client(), password=f"guess {n}")
        assert not admin_log_in(Client())
        # Nor from another address: the account itself is locked.
        assert not admin_log_in(Client(REMOTE_ADDR="203.0.113.9"))

    def test_failures_in_the_admin_lock_the_web_log_in_of_the_same_account(self, sam, admin_served):
        """The admin asks for the username, the web log-in for the email: one account, one count."""
        for n in range(5):
            assert not admin_log_in(Client(REMOTE_ADDR=f"203.0.113.{n}"), password="guess")
        assert LOCKED in web_log_in(Client(REMOTE_ADDR="198.51.100.7"))

    def test_failures_in_the_web_log_in_lock_the_admin(self, sam, admin_served):
        for n in range(5):
            web_log_in(Client(REMOTE_ADDR=f"203.0.113.{n}"), password="guess")
        assert not admin_log_in(Client(REMOTE_ADDR="198.51.100.7"))
        # An account that was not guessed at is not locked.
        UserFactory(username="tess", email="tess@operator.example", is_staff=True, is_superuser=True)
        assert admin_log_in(Client(REMOTE_ADDR="198.51.100.7"), "tess")


class TestStaffTokens:
    def balance(self, client: APIClient) -> int:
        return client.get("/api/staff/organizations/").status_code

    def test_ten_wrong_tokens_from_an_address_lock_it_even_for_a_right_token(self, sam):
        right = staff_token_for(sam)
        client = APIClient(REMOTE_ADDR="198.51.100.20")
        client.credentials(HTTP_AUTHORIZATION=f"Token {right}")
        assert self.balance(client) == 200
        wrong = APIClient(REMOTE_ADDR="198.51.100.20")
        for n in range(10):
            wrong.credentials(HTTP_AUTHORIZATION=f"Token st-tb-guess{n}")
            assert self.balance(wrong) == 401
        response = client.get("/api/staff/organizations/")
        assert response.status_code == 429
        assert int(response["Retry-After"]) == 60
        assert "Too many wrong tokens" in response.json()["error"]["message"]
        other = APIClient(REMOTE_ADDR="203.0.113.20")
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {right}")
        assert self.balance(other) == 200

    def test_wrong_passwords_and_wrong_tokens_share_the_address_count(self, sam):
        right = staff_token_for(sam)
        for n in range(10):
            web_log_in(Client(REMOTE_ADDR="198.51.100.30"), f"nobody{n}@example.com", "guess")
        client = APIClient(REMOTE_ADDR="198.51.100.30")
        client.credentials(HTTP_AUTHORIZATION=f"Token {right}")
        assert self.balance(client) == 429


def test_the_limits_are_settings(sam, settings):
    settings.LOGIN_THROTTLE = {"address": (100, 60), "account": (2, 300)}
    for _ in range(2):
        web_log_in(Client(), password="guess")
    assert LOCKED in web_log_in(Client())


def test_an_ipv6_client_counts_as_its_slash_64(sam):
    """One host usually holds a whole /64: changing the last bits of the address does not buy more guesses."""
    for n in range(10):
        web_log_in(Client(REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}"), f"nobody{n}@example.com", "guess")
    assert LOCKED in web_log_in(Client(REMOTE_ADDR="2001:db8:1:2:ffff::1"))
    assert LOCKED not in web_log_in(Client(REMOTE_ADDR="2001:db8:1:3::1"))


def test_counts_are_kept_in_redis_with_their_window_as_expiry(sam):
    """Shared by every web process, and never kept past their window."""
    web_log_in(Client(), password="guess")
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    assert isinstance(client, redis.Redis)
    ttls = sorted(client.ttl(key) for key in client.keys(f"*{KEY_PREFIX}*"))
    assert len(ttls) == 2 and 0 < ttls[0] <= 60 < ttls[1] <= 300
