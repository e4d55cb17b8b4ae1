"""Reinstalls the function files: ledger_hold_place_budgeted claims only hard budgets (alert-only ones are counted
by the settle)."""

from django.db import migrations

from billing.ledger.sql import functions_install

# The digest of the function files this migration was written for (tests/billing/ledger/test_functions.py).
FUNCTIONS_DIGEST = "6694ee0df673b23aee66e0f8e5a13b634b0b67d033a607fed775d14767c7aa17"


def install(apps, schema_editor):
    functions_install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_hold_place_budgeted")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
