"""Logging in while Redis is down, against a Redis server that really stops: sessions are in the database, and the
log-in throttle (the only thing on the log-in path that uses Redis) lets attempts through and logs a warning."""

import logging
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User

from accounts import login_throttle
from accounts.models import Organization, Role
from tests.accounts.factories import UserFactory
from tests.harness import free_port, wait_for_port

PASSWORD = "correct horse battery staple"


class OwnRedis:
    """A redis-server of this test's own, with nothing written to disk, that the test can stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stored_keys(self) -> list[bytes]:
        return redis.Redis(port=self.port).keys("*")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    server = OwnRedis()
    settings.CACHES = {  # type: ignore[attr-defined]
        alias: {**config, "LOCATION": server.url}
        for alias, config in settings.CACHES.items()  # type: ignore[attr-defined]
    }
    throttle_state_reset(monkeypatch)
    yield server
    server.stop()


def throttle_state_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier test's outage neither silences this one's warning nor keeps the throttle open (and this one's is
    undone after it)."""
    login_throttle.cache_outage.reset()


@pytest.fixture
def erin(transactional_db: None) -> User:
    user = UserFactory(username="erin@example.com")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Organization.objects.create(name="Erin Labs").memberships.create(user=user, role=Role.OWNER)
    return user


def log_in(browser: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = browser.get("/accounts/login/")
    assert page.status_code == 200 and 'name="password"' in page.text
    form = {"login": "erin@example.com", "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
    return browser.post("/accounts/login/", data=form)


def test_log_in_works_before_during_and_after_a_redis_outage(live_url, own_redis, erin, caplog):
    browser = httpx.Client(base_url=live_url, timeout=10)
    # Redis up: a failure is counted in it, and logging in works.
    assert "are not correct" in log_in(browser, "wrong").text
    assert any(b"login-throttle" in key for key in own_redis.stored_keys())
    response = log_in(browser)
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert "Erin Labs" in browser.get("/").text

    own_redis.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=own_redis.port).ping()

    # The session is in the database: still logged in.
    assert "Erin Labs" in browser.get("/").text
    assert browser.post("/accounts/logout/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]}).is_redirect
    # The log-in page renders, a wrong password gets its message, the right one logs in: no 500 anywhere.
    assert "are not correct" in log_in(browser, "wrong").text
    response = log_in(browser)
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert "Erin Labs" in browser.get("/").text
    # Password reset still counts allauth's limits in Redis: it says "temporarily unavailable", not an error page.
    browser.post("/accounts/logout/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]})
    assert browser.get("/accounts/password/reset/").status_code == 200
    reset = browser.post(
        "/accounts/password/reset/",
        data={"email": "erin@example.com", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
    )
    assert (reset.status_code, reset.headers["Retry-After"]) == (503, "60")
    assert "Temporarily unavailable" in reset.text and "Nothing was changed" in reset.text
    warnings = [r for r in caplog.records if r.name == "accounts.login_throttle" and r.levelno == logging.WARNING]
    assert warnings and "the cache is unreachable" in warnings[0].getMessage()
    # Once a minute per process, not once per attempt.
    assert len(warnings) == 1


def test_staff_tokens_work_while_redis_is_down(live_url, own_redis, transactional_db):
    from accounts.services.stafftokens import staff_token_issue

    staff = UserFactory(username="ops@operator.example", is_staff=True)
    secret = staff_token_issue(user=staff, replace=False, actor=None)[1]
    own_redis.stop()
    url = f"{live_url}/api/staff/organizations/"
    assert httpx.get(url, headers={"Authorization": f"Token {secret}"}, timeout=10).status_code == 200
    assert httpx.get(url, headers={"Authorization": "Token st-tb-wrong"}, timeout=10).status_code == 401


def test_a_redis_that_hangs_does_not_hold_log_ins_up(live_url, erin, settings, monkeypatch, caplog):
    """Not refused but silent (a host gone from the network, a stuck server): the throttle's connections time out
    after a second and it fails open, then leaves Redis alone for a few seconds."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete in the backlog; nothing ever reads or answers them
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    settings.CACHES = {**settings.CACHES, "login_throttle": {**settings.CACHES["login_throttle"], "LOCATION": url}}
    throttle_state_reset(monkeypatch)
    browser = httpx.Client(base_url=live_url, timeout=15)
    try:
        started = time.monotonic()
        response = log_in(browser)
        assert (response.status_code, response.headers["Location"]) == (302, "/")
        assert time.monotonic() - started < 4
        assert any("the cache is unreachable" in r.getMessage() for r in caplog.records)
    finally:
        silent.close()
