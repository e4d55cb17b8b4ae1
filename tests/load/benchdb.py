"""A throwaway PostgreSQL database for a benchmark: created and migrated at the start, dropped at the end.

The server is the one DATABASE_URL names (the benchmark never touches that database itself).
"""

import contextlib
import os
from collections.abc import Iterator

import django
import psycopg
from psycopg.conninfo import make_conninfo


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    django.setup()


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[str]:
    """Point Django's default database at a fresh, migrated database `name`; drop it afterwards."""
    django_setup()
    from django.core.management import call_command
    from django.db import connections

    from core import pg

    connections.close_all()
    settings_dict = connections["default"].settings_dict
    if connections["default"].vendor != "postgresql":
        raise SystemExit("benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")
    admin = make_conninfo(pg.conninfo(), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield name
    finally:
        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]
