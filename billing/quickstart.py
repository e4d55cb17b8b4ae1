"""The quickstart runner: the whole product on one machine, with demo data and no account anywhere.

`manage.py quickstart` (what `make run` calls) starts an embedded PostgreSQL (unless DATABASE_URL is set),
prepares the database and the demo data in its own process, then runs these processes together under honcho (a
Procfile runner), each in its own process group:

- stripe: localstripe, a stateful fake of Stripe's API (and of Stripe.js); STRIPE_API_BASE points every process
  at it, and the product's webhook endpoint is registered with it once it answers;
- web: the ASGI app under uvicorn, on $PORT (8000 by default);
- worker and beat: Celery, on kombu's filesystem transport unless a broker is configured.

With no UPSTREAM_BASE_URL, the built-in demo model answers the metered API.

Every way of stopping it stops all of it. Ctrl-C, SIGTERM or SIGHUP (a closed terminal): honcho sends SIGTERM to
each process group, then SIGKILL to what is left after 5 seconds, and the embedded PostgreSQL stops as the
quickstart exits. Its parent dying (`make` killed): the kernel sends the quickstart SIGTERM (PR_SET_PDEATHSIG).
The quickstart itself killed outright (SIGKILL): its guard (billing.quickstart_guard) stops what is left.
"""

import logging
import os
import shlex
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from honcho.manager import Manager
from honcho.printer import Printer

WEBHOOK_NAME = "quickstart"
START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Endpoints:
    host: str
    port: int
    stripe_port: int

    @property
    def url(self) -> str:
        # 127.0.0.1 rather than 0.0.0.0 in what we print: that is where a browser on this machine finds it.
        shown = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host  # noqa: S104
        return f"http://{shown}:{self.port}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}"


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104  (a probe, closed at once)
        except OSError:
            return True
    return False


def child_environment(base: dict[str, str], endpoints: Endpoints) -> dict[str, str]:
    """What every process gets: the caller's environment, plus the quickstart's own wiring."""
    env = dict(base)
    env.update(
        {
            "DEBUG": "true" if settings.DEBUG else "false",
            "PORT": str(endpoints.port),
            "STRIPE_API_BASE": endpoints.stripe_url,
            "VAR_DIR": str(settings.VAR_DIR),
            "TIKTOKEN_CACHE_DIR": str(settings.TIKTOKEN_CACHE_DIR),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    env.setdefault("SITE_URL", endpoints.url)
    return env


def process_commands(endpoints: Endpoints) -> dict[str, str]:
    """name -> shell command. `exec` so the process honcho signals is the program itself, not a shell."""
    python = shlex.quote(sys.executable)
    schedule = shlex.quote(str(Path(settings.VAR_DIR) / "celerybeat-schedule"))
    return {
        "stripe": f"exec {python} -m tooling.localstripe_launcher --port {endpoints.stripe_port} --from-scratch",
        "web": (
            f"exec {python} -m uvicorn config.asgi:application --host {shlex.quote(endpoints.host)} "
            f"--port {endpoints.port} --lifespan off --timeout-graceful-shutdown 3"
        ),
        # One task at a time: a demo's load, and the least memory.
        "worker": (
            f"exec {python} -m celery -A config worker --pool solo --loglevel INFO "
            "--without-gossip --without-mingle --without-heartbeat"
        ),
        "beat": f"exec {python} -m celery -A config beat --loglevel INFO --schedule {schedule}",
    }


def broker_folders_ensure() -> None:
    """kombu's filesystem transport needs its folders to exist before the worker starts."""
    for folder in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        path = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(folder)
        if path:
            Path(path).mkdir(parents=True, exist_ok=True)


def http_ready(url: str, *, timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.25)
    return False


def webhook_register(*, stripe_url: str, target: str, secret: str) -> None:
    """Make localstripe deliver signed events to the product, as Stripe does to a configured endpoint."""
    response = httpx.post(
        f"{stripe_url}/_config/webhooks/{WEBHOOK_NAME}", data={"url": target, "secret": secret}, timeout=10
    )
    response.raise_for_status()


def default_route_notice() -> str:
    """One sentence for the banner: which server answers the models that staff did not route elsewhere (the
    gateway's rule, api.gateway.upstreams)."""
    if settings.UPSTREAM_BASE_URL:
        host = urlsplit(settings.UPSTREAM_BASE_URL).hostname
        return (
            f"Models: answered by the model server at {host} (the model `demo` by the built-in demo model), "
            "unless staff route them elsewhere; GET /v1/models shows `served_by` per model."
        )
    return (
        "Models: no UPSTREAM_BASE_URL is set, so the built-in demo model answers EVERY model (gpt-4o, gpt-4o-mini, "
        "...) with demo text and demo embeddings, each charged at that model's own price; GET /v1/models shows "
        "`served_by` per model."
    )


def banner(*, endpoints: Endpoints, demo: dict[str, Any]) -> str:
    url, key, login = endpoints.url, demo["api_key"], demo["login"]
    chat = '{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}'
    rule = "=" * 78
    return "\n".join(
        [
            rule,
            f"Token billing is running at {url}/",
            f"  Log in:        {url}/accounts/login/  as  {login['email']}  /  {login['password']}",
            f"  Demo API key:  {key}",
            f"  Demo credit:   {demo['balance']} {demo['currency']} (organization {demo['organization_id']})",
            f"  API docs:      {url}/api/docs/",
            f"  Stripe:        localstripe at {endpoints.stripe_url} (test card 4242 4242 4242 4242)",
            "  Emails (sign-up confirmations) are printed below by the web process.",
            *textwrap.wrap(default_route_notice(), width=78, initial_indent="  ", subsequent_indent="  "),
            "Try:",
            f'  curl {url}/v1/balance -H "Authorization: Bearer {key}"',
            f'  curl {url}/v1/chat/completions -H "Authorization: Bearer {key}" \\',
            f"       -H 'Content-Type: application/json' -d '{chat}'",
            "Press Ctrl-C to stop everything.",
            rule,
        ]
    )


def announce_when_ready(
    *, endpoints: Endpoints, demo: dict[str, Any], stop: threading.Event, write: Callable[[str], None]
) -> None:
    """Register the webhook once localstripe answers, then print the banner once the web process answers."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the polling is not news
    if http_ready(f"{endpoints.stripe_url}/js.stripe.com/v3/", timeout=START_TIMEOUT_SECONDS, stop=stop):
        try:
            webhook_register(
                stripe_url=endpoints.stripe_url,
                target=f"http://127.0.0.1:{endpoints.port}/stripe/webhook/",
                secret=settings.STRIPE_WEBHOOK_SECRET,
            )
        except httpx.HTTPError as error:
            write(f"Could not register the webhook with localstripe ({error}); payments will not be confirmed.")
    if http_ready(f"http://127.0.0.1:{endpoints.port}/accounts/login/", timeout=START_TIMEOUT_SECONDS, stop=stop):
        write(banner(endpoints=endpoints, demo=demo))
    elif not stop.is_set():
        write(f"The web process did not answer on port {endpoints.port} within {START_TIMEOUT_SECONDS:.0f} s.")


def _hangup(signum: int, frame: object) -> None:
    """A closed terminal stops the quickstart like SIGTERM (honcho's handler)."""
    os.kill(os.getpid(), signal.SIGTERM)


class _Manager(Manager):
    """honcho's Manager, calling `on_started` once every process has been forked.

    The announcer thread starts only then: forking while another thread holds a lock (an HTTP client's, the
    logging module's) could leave that lock held forever in the child.
    """

    def __init__(self, *, on_started: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_started = on_started

    def _start(self) -> None:
        signal.signal(signal.SIGHUP, _hangup)  # loop() has just installed its SIGINT and SIGTERM handlers
        super()._start()
        self._on_started()


def run(*, endpoints: Endpoints, environment: dict[str, str], demo: dict[str, Any]) -> int:
    """Run every process until Ctrl-C or until one of them stops. Returns the exit status for the shell."""
    lock = threading.Lock()

    def write(text: str) -> None:
        with lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    announcer = threading.Thread(
        target=announce_when_ready,
        kwargs={"endpoints": endpoints, "demo": demo, "stop": stop, "write": write},
        name="quickstart-announcer",
        daemon=True,
    )
    manager = _Manager(printer=Printer(sys.stdout), on_started=announcer.start)
    for name, command in process_commands(endpoints).items():
        manager.add_process(name, command, env=environment, cwd=str(settings.BASE_DIR))
    manager.loop()  # installs its own SIGINT/SIGTERM handlers: terminate everything, then return
    stop.set()
    if manager.returncode in {128 + signal.SIGINT, 128 + signal.SIGTERM}:
        write("Stopped.")
        return 0
    write(f"A process stopped (exit status {manager.returncode}); everything was stopped.")
    return manager.returncode or 1
