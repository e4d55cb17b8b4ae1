"""Price history is immutable in the database too (PostgreSQL; SQLite, for the quickstart only, relies on the
services): a price version that a usage record was rated with can never be updated."""

from django.db import migrations

GUARD = """
CREATE FUNCTION pricing_version_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM usage_usagerecord WHERE price_version_id = OLD.id) THEN
        RAISE EXCEPTION 'pricing: price version % has rated usage and can never change; schedule a new version',
            OLD.id USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER pricing_priceversion_history BEFORE UPDATE ON pricing_priceversion
    FOR EACH ROW EXECUTE FUNCTION pricing_version_in_use();
"""

DROP_GUARD = """
DROP TRIGGER pricing_priceversion_history ON pricing_priceversion;
DROP FUNCTION pricing_version_in_use();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("pricing", "0002_plans_commitments_overrides_tiers"), ("usage", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(GUARD), _on_postgresql(DROP_GUARD))]
