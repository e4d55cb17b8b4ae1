"""A finalized invoice never changes (PostgreSQL; the close, which runs only on PostgreSQL, is the only writer):

- its money, period, lines and number are frozen once it leaves `closing`/`draft`, and it is never deleted;
- its status only moves forward: finalized -> paid | uncollectible | void, uncollectible -> paid | void;
- its lines are written only while it is `closing` (the close writes them and its totals in one transaction).
Corrections are new documents, never edits.
"""

from django.db import migrations

GUARD = """
CREATE FUNCTION invoicing_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status NOT IN ('closing', 'draft') THEN
            RAISE EXCEPTION 'invoicing: invoice % is finalized and can never be deleted', OLD.number
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status IN ('closing', 'draft') THEN
        RETURN NEW;
    END IF;
    IF ROW(NEW.organization_id, NEW.wallet_id, NEW.currency, NEW.period_start, NEW.period_end, NEW.issuer,
           NEW.sequence, NEW.number, NEW.charges_nano, NEW.credit_applied_nano, NEW.carry_in_nano,
           NEW.total_exact_nano, NEW.total_minor, NEW.carry_out_nano, NEW.collection_method, NEW.days_until_due,
           NEW.created_at, NEW.drafted_at, NEW.finalized_at)
       IS DISTINCT FROM
       ROW(OLD.organization_id, OLD.wallet_id, OLD.currency, OLD.period_start, OLD.period_end, OLD.issuer,
           OLD.sequence, OLD.number, OLD.charges_nano, OLD.credit_applied_nano, OLD.carry_in_nano,
           OLD.total_exact_nano, OLD.total_minor, OLD.carry_out_nano, OLD.collection_method, OLD.days_until_due,
           OLD.created_at, OLD.drafted_at, OLD.finalized_at) THEN
        RAISE EXCEPTION 'invoicing: invoice % is finalized and can never change; issue a credit note', OLD.number
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'finalized' AND NEW.status IN ('paid', 'uncollectible', 'void'))
        OR (OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void'))
    ) THEN
        RAISE EXCEPTION 'invoicing: invoice % cannot go from % to %', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoicing_invoice_frozen BEFORE UPDATE OR DELETE ON invoicing_invoice
    FOR EACH ROW EXECUTE FUNCTION invoicing_invoice_guard();

CREATE FUNCTION invoicing_line_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    invoice_status text;
BEGIN
    SELECT status INTO invoice_status FROM invoicing_invoice
     WHERE id = CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END;
    IF invoice_status IS DISTINCT FROM 'closing' THEN
        RAISE EXCEPTION 'invoicing: the lines of a % invoice can never change', invoice_status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER invoicing_line_frozen BEFORE INSERT OR UPDATE OR DELETE ON invoicing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION invoicing_line_guard();
"""

DROP_GUARD = """
DROP TRIGGER invoicing_line_frozen ON invoicing_invoiceline;
DROP FUNCTION invoicing_line_guard();
DROP TRIGGER invoicing_invoice_frozen ON invoicing_invoice;
DROP FUNCTION invoicing_invoice_guard();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0001_invoices")]

    operations = [migrations.RunPython(_on_postgresql(GUARD), _on_postgresql(DROP_GUARD))]
