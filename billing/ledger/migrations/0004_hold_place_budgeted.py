"""Installs ledger_hold_place_budgeted (the hold and its claims on the budgets of billing.metering, in one
statement) with the other function files, as 0003 does."""

from django.db import migrations

from billing.ledger.sql import functions_install

# The digest of the function files this migration was written for (tests/billing/ledger/test_functions.py).
FUNCTIONS_DIGEST = "e9e0415c4ad65901b55cfc0089bfa0bda1f0b8bebbc29ac424b61d64f580f7de"


def install(apps, schema_editor):
    functions_install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_functions_from_sql_files")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
