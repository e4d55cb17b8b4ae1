"""manage.py quickstart: run the whole product locally with demo data (what `make run` does)."""

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import environ
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from billing import quickstart, quickstart_guard
from billing.demo import demo_seed
from billing.embedded_postgres import embedded_postgres_start
from billing.tokens import vocabularies_install
from core.money import format_amount

EMBEDDED_DATABASE = "billing"


def database_use(url: str) -> None:
    """Point this process (no connection is open yet) and the processes it starts at `url`."""
    os.environ["DATABASE_URL"] = url
    parsed = environ.Env.db_url_config(url)
    parsed["HOST"] = unquote(parsed["HOST"])  # a socket folder (config.settings.env_db_url does the same)
    for name in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        settings.DATABASES["default"][name] = parsed[name]


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError(value)
    return port


class Command(BaseCommand):
    help = (
        "Start the whole product with demo data: migrate, seed, then run localstripe, web (uvicorn), worker and "
        "beat together. Prints the URL, the demo login and API key. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=_port, default=os.environ.get("PORT", "8000"), help="Web port (default $PORT or 8000)."
        )
        parser.add_argument("--host", default="127.0.0.1", help="Web interface to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--stripe-port",
            type=_port,
            default=os.environ.get("LOCALSTRIPE_PORT", "8420"),
            help="localstripe's port (default $LOCALSTRIPE_PORT or 8420).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        endpoints = quickstart.Endpoints(host=options["host"], port=options["port"], stripe_port=options["stripe_port"])
        for name, port in (("--port", endpoints.port), ("--stripe-port", endpoints.stripe_port)):
            if quickstart.port_in_use(port):
                raise CommandError(f"port {port} is already in use; choose another with {name} (or stop what uses it)")
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        quickstart_guard.guard_start()
        if "DATABASE_URL" in os.environ:  # the operator's database wins
            self.stdout.write(
                f"Database: {settings.DATABASES['default']['NAME']} (DATABASE_URL); applying migrations..."
            )
        else:
            data_dir = Path(settings.VAR_DIR) / "postgres"
            server = embedded_postgres_start(data_dir=data_dir)
            quickstart_guard.guard_tell_fast(server.postmaster_pid)
            server.database_ensure(EMBEDDED_DATABASE)
            database_use(server.url(EMBEDDED_DATABASE))
            self.stdout.write(f"Database: embedded PostgreSQL in {data_dir}; applying migrations...")
        call_command("migrate", interactive=False, verbosity=0)
        vocabularies_install()
        quickstart.broker_folders_ensure()
        demo = demo_seed(staff=True)
        connections.close_all()  # the processes below open their own
        self.stdout.write(
            f"Demo data ready: organization {demo.organization.pk}, {demo.models_seeded} models priced. Starting..."
        )
        environment = quickstart.child_environment(dict(os.environ), endpoints)
        summary = {
            "organization_id": demo.organization.pk,
            "api_key": demo.secret,
            "balance": format_amount(demo.available_nano),
            "currency": demo.currency,
            "login": {"email": demo.user.email, "password": demo.password},
        }
        sys.exit(quickstart.run(endpoints=endpoints, environment=environment, demo=summary))
