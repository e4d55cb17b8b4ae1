"""The ledger's PL/pgSQL functions from their source files (billing/ledger/functions/*.sql).

Migration 0002 created them from strings; this replaces them with the files' text (the same functions on a
database migrated before), so the files are the one source from here on. A later change to a file ships with a
migration like this one, recording the files' new digest (billing.ledger.sql.functions_digest()).
"""

from django.db import migrations

from billing.ledger.sql import functions_install

# The digest of the function files this migration was written for (tests/billing/ledger/test_functions.py).
FUNCTIONS_DIGEST = "21dc03eb9d4eb9b302b2bc8fabbe76bccbbfc3588596d025038e8b88f5114dd0"


def install(apps, schema_editor):
    functions_install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_journal_guards")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
