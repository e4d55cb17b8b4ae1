"""Installs ledger_hold_place_budgeted (the hold and its claims on the budgets of billing.metering, in one
statement) with the other function files, as 0003 does."""

from django.db import migrations

from billing.ledger.sql import functions_install

# The digest of the function files this migration was written for (tests/billing/ledger/test_functions.py).
FUNCTIONS_DIGEST = "67e1af00177b7138cb54c10d6dea7db448a6a4f66a4a1daefeb05d19fb56e07b"


def install(apps, schema_editor):
    functions_install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_functions_from_sql_files")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
