"""The ledger's PL/pgSQL functions are installed from their source files: the database runs what the files say.

A change to a file without a migration that installs it again (billing.ledger.sql.functions_install) fails here:
databases migrated before would keep the old function.
"""

import importlib
import re

import pytest
from django.db import connection

from billing.ledger import sql

pytestmark = pytest.mark.django_db


def body(source: str) -> str:
    match = re.search(r"\$\$(.*)\$\$", source, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("file_name", sql.FUNCTION_FILES)
def test_the_installed_function_is_the_files(file_name):
    name = file_name.removesuffix(".sql")
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [name])
        installed = [row[0] for row in cursor.fetchall()]
    assert installed == [body(sql.function_source(file_name))]


def test_every_file_is_installed():
    assert sorted(path.name for path in sql.FUNCTIONS_DIR.glob("*.sql")) == sorted(sql.FUNCTION_FILES)


def test_the_newest_installing_migration_was_written_for_the_files_as_they_are():
    folder = sql.FUNCTIONS_DIR.parent / "migrations"
    recorded = [
        getattr(importlib.import_module(f"billing.ledger.migrations.{path.stem}"), "FUNCTIONS_DIGEST", None)
        for path in sorted(folder.glob("[0-9]*.py"))
    ]
    newest = [digest for digest in recorded if digest][-1]
    assert newest == sql.functions_digest(), (
        "billing/ledger/functions/ changed: add a migration that calls billing.ledger.sql.functions_install and "
        f"records FUNCTIONS_DIGEST = {sql.functions_digest()!r}"
    )
