"""Fixtures that run real parts beside the tests: the product on a real socket (uvicorn, ASGI), localstripe,
and headless Chromium driven by Playwright.

Tests that use the live server must use `transactional_db`: the server reads the database through its own
connections, so the test's data has to be committed to be seen.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running on the main thread from the first
    browser test on, and an async test after it could not start its own."""
    items.sort(key=lambda item: "browser_session" in getattr(item, "fixturenames", ()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class LiveServer:
    """The ASGI application under uvicorn, in a thread of the test process (so it shares the test settings and
    test database)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            "config.asgi:application",
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server_session(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_url(live_server_session: LiveServer, transactional_db: None) -> str:
    """Base URL of the product running on a real socket, for this (transactional) test."""
    return live_server_session.url


class LocalStripe:
    """localstripe in a subprocess: a stateful fake of Stripe's HTTP API (and of Stripe.js)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # localstripe with what it lacks for one-off invoices (tooling/localstripe_launcher.py).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tooling.localstripe_launcher", "--port", str(self.port), "--from-scratch"],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def register_webhook(self, *, url: str, secret: str, name: str = "product") -> None:
        """Make localstripe deliver signed events to `url`, as Stripe would to a configured endpoint."""
        response = httpx.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret})
        response.raise_for_status()


@pytest.fixture(scope="session")
def localstripe_session() -> Iterator[LocalStripe]:
    stripe = LocalStripe()
    stripe.start()
    yield stripe
    stripe.stop()


@pytest.fixture
def localstripe(localstripe_session: LocalStripe, settings: pytest.FixtureRequest) -> LocalStripe:
    """localstripe, with the product's Stripe client (and Stripe.js) pointed at it for this test."""
    settings.STRIPE_API_BASE = localstripe_session.url  # type: ignore[attr-defined]
    return localstripe_session


@pytest.fixture(scope="session")
def browser_session() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` (or set CHROMIUM_PATH)"
        )
    # Playwright's sync API keeps an event loop running on the main thread for the whole session, which makes
    # Django refuse the test database's own flush between tests; the tests themselves make no async ORM calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser_session: object) -> Iterator[object]:
    """A fresh browser context (no cookies) and page; 10 s default timeout so a broken page fails fast."""
    context = browser_session.new_context()  # type: ignore[attr-defined]
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
