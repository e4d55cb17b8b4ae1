"""Reinstalls the function files: which budgets cover a call is written once, in budget_covers, which the budgeted
hold calls (and the budgets' settle and charge statements)."""

from django.db import migrations

from billing.ledger.sql import functions_install

# The digest of the function files this migration was written for (tests/billing/ledger/test_functions.py).
FUNCTIONS_DIGEST = "bae5e30f5137a1e471ade2a300f95eafd4e2461ca01db33e6db8610d0e8326b8"


def install(apps, schema_editor):
    functions_install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_journal_by_time")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
