"""Database guards for the journal, on PostgreSQL (SQLite, for the quickstart only, relies on the services).

- Journal transactions, entries and grant draws are append-only: UPDATE and DELETE raise.
- Every journal transaction balances: at commit, its entries sum to zero and it has at least two.
- ledger_require(ok, message) raises SQLSTATE LD001 when `ok` is false, so one statement of the hot path
  can refuse (and roll back) instead of returning nothing (see billing.ledger.sql).
"""

from django.db import migrations

GUARDS = """
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only; book a correcting transaction instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_journaltransaction_append_only BEFORE UPDATE OR DELETE ON ledger_journaltransaction
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_journalentry_append_only BEFORE UPDATE OR DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_grantdraw_append_only BEFORE UPDATE OR DELETE ON ledger_grantdraw
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE FUNCTION ledger_require(ok boolean, message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'LD001';
    END IF;
    RETURN true;
END $$;

CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    legs integer;
BEGIN
    SELECT coalesce(sum(amount_nano), 0), count(*) INTO total, legs
      FROM ledger_journalentry WHERE transaction_id = NEW.id;
    IF total <> 0 OR legs < 2 THEN
        RAISE EXCEPTION 'ledger: transaction % does not balance (% legs, sum %)', NEW.id, legs, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

-- Checked at commit, once the entries of the transaction have been written.
CREATE CONSTRAINT TRIGGER ledger_journaltransaction_balanced AFTER INSERT ON ledger_journaltransaction
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();
"""

DROP_GUARDS = """
DROP TRIGGER ledger_journaltransaction_balanced ON ledger_journaltransaction;
DROP FUNCTION ledger_transaction_balanced();
DROP TRIGGER ledger_grantdraw_append_only ON ledger_grantdraw;
DROP TRIGGER ledger_journalentry_append_only ON ledger_journalentry;
DROP TRIGGER ledger_journaltransaction_append_only ON ledger_journaltransaction;
DROP FUNCTION ledger_append_only();
DROP FUNCTION ledger_require(boolean, text);
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(GUARDS), _on_postgresql(DROP_GUARDS))]
