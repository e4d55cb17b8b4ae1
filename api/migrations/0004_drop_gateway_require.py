"""Drops gateway_require: the key spend-limit claim that used it is gone (a key's limit is a hard budget, claimed in
ledger_hold_place_budgeted)."""

from django.db import migrations

CREATE = """
CREATE FUNCTION gateway_require(ok boolean, message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'GW001';
    END IF;
    RETURN true;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("api", "0003_keyspend_moves_to_metering")]

    operations = [
        migrations.RunSQL("DROP FUNCTION IF EXISTS gateway_require(boolean, text);", reverse_sql=CREATE),
    ]
