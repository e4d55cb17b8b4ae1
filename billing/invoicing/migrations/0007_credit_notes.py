"""Credit notes: documents of kind `credit_note` in the invoice table, each correcting one finalized invoice with
lines that reverse its lines, numbered in a series of their own, and `issued` once written (a status that never
moves). The invoice guard (0002) now freezes what makes a credit note too (kind, the invoice corrected, the reason,
the key, the ledger grant); an issued credit note can change no status either, since the guard allows moves only
from finalized and uncollectible. Lines are still written only while their document is `closing`.
"""

import django.db.models.deletion
from django.db import migrations, models

GUARD = """
CREATE OR REPLACE FUNCTION invoicing_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
           NEW.created_at, NEW.drafted_at, NEW.finalized_at, NEW.kind, NEW.corrects_id, NEW.reason, NEW.idempotency_key, NEW.credit_grant_id)
       IS DISTINCT FROM
       ROW(OLD.organization_id, OLD.wallet_id, OLD.currency, OLD.period_start, OLD.period_end, OLD.issuer,
           OLD.sequence, OLD.number, OLD.charges_nano, OLD.credit_applied_nano, OLD.carry_in_nano,
           OLD.total_exact_nano, OLD.total_minor, OLD.carry_out_nano, OLD.collection_method, OLD.days_until_due,
           OLD.created_at, OLD.drafted_at, OLD.finalized_at, OLD.kind, OLD.corrects_id, OLD.reason, OLD.idempotency_key, OLD.credit_grant_id) THEN
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
"""

GUARD_BEFORE = """
CREATE OR REPLACE FUNCTION invoicing_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_stafftoken_hashed"),
        ("invoicing", "0006_billing_details"),
        ("ledger", "0003_functions_from_sql_files"),
        ("pricing", "0004_commitment_idempotency_key"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="invoice",
            name="invoicing_one_per_period",
        ),
        migrations.RemoveConstraint(
            model_name="invoice",
            name="invoicing_status_valid",
        ),
        migrations.RemoveConstraint(
            model_name="invoice",
            name="invoicing_charges_not_negative",
        ),
        migrations.RemoveConstraint(
            model_name="invoice",
            name="invoicing_credit_not_positive",
        ),
        migrations.RemoveConstraint(
            model_name="invoice",
            name="invoicing_total_not_negative",
        ),
        migrations.RemoveConstraint(
            model_name="invoiceline",
            name="invoicing_line_kind_valid",
        ),
        migrations.RemoveConstraint(
            model_name="invoicesequence",
            name="invoicing_sequence_unique",
        ),
        migrations.AddField(
            model_name="invoice",
            name="corrects",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_notes",
                to="invoicing.invoice",
            ),
        ),
        migrations.AddField(
            model_name="invoice",
            name="credit_grant_id",
            field=models.BigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="invoice",
            name="idempotency_key",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="invoice",
            name="kind",
            field=models.CharField(
                choices=[("invoice", "Invoice"), ("credit_note", "Credit note")], default="invoice", max_length=20
            ),
        ),
        migrations.AddField(
            model_name="invoice",
            name="reason",
            field=models.CharField(blank=True, default="", max_length=1000),
        ),
        migrations.AddField(
            model_name="invoice",
            name="stripe_credit_note_id",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="invoiceline",
            name="reverses",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversals",
                to="invoicing.invoiceline",
            ),
        ),
        migrations.AddField(
            model_name="invoicesequence",
            name="kind",
            field=models.CharField(
                choices=[("invoice", "Invoice"), ("credit_note", "Credit note")], default="invoice", max_length=20
            ),
        ),
        migrations.AlterField(
            model_name="invoice",
            name="status",
            field=models.CharField(
                choices=[
                    ("closing", "Closing"),
                    ("draft", "Draft"),
                    ("finalized", "Finalized"),
                    ("paid", "Paid"),
                    ("uncollectible", "Uncollectible"),
                    ("void", "Void"),
                    ("issued", "Issued"),
                ],
                default="closing",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="invoiceline",
            name="kind",
            field=models.CharField(
                choices=[
                    ("usage", "Usage"),
                    ("plan_fee", "Plan fee"),
                    ("commitment_fee", "Commitment fee"),
                    ("tier_trueup", "Volume-tier true-up"),
                    ("charge", "Other charge"),
                    ("credit_paid", "Paid credit applied"),
                    ("credit_promotional", "Promotional credit applied"),
                    ("credit_refund", "Refund credit applied"),
                    ("credit_plan_allowance", "Plan credit applied"),
                    ("carry", "Rounding carried from the previous invoice"),
                    ("refund", "Credit refunded to the card"),
                    ("dispute", "Credit withdrawn by a card dispute"),
                    ("reversal", "Reversal of an invoice line"),
                ],
                max_length=30,
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "invoice")),
                fields=("organization", "period_start"),
                name="invoicing_one_per_period",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "credit_note")),
                fields=("corrects", "idempotency_key"),
                name="invoicing_credit_note_key_unique",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["invoice", "credit_note"])), name="invoicing_kind_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("corrects__isnull", True),
                        ("idempotency_key", ""),
                        ("kind", "invoice"),
                        models.Q(("status", "issued"), _negated=True),
                    ),
                    models.Q(
                        ("corrects__isnull", False),
                        ("kind", "credit_note"),
                        ("status__in", ("closing", "issued")),
                        models.Q(("idempotency_key", ""), _negated=True),
                        models.Q(("reason", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="invoicing_credit_note_shape",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status__in", ["closing", "draft", "finalized", "paid", "uncollectible", "void", "issued"])
                ),
                name="invoicing_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "credit_note"), ("charges_nano__gte", 0), _connector="OR"),
                name="invoicing_charges_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "credit_note"), ("credit_applied_nano__lte", 0), _connector="OR"),
                name="invoicing_credit_not_positive",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "credit_note"), ("total_minor__gte", 0), _connector="OR"),
                name="invoicing_total_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("kind", "invoice"),
                    models.Q(("charges_nano__lte", 0), ("credit_applied_nano__gte", 0), ("total_minor__lte", 0)),
                    _connector="OR",
                ),
                name="invoicing_credit_note_signs",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoiceline",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("kind", "reversal"), ("reverses__isnull", False)),
                    models.Q(models.Q(("kind", "reversal"), _negated=True), ("reverses__isnull", True)),
                    _connector="OR",
                ),
                name="invoicing_reversal_names_its_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoiceline",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "usage",
                            "plan_fee",
                            "commitment_fee",
                            "tier_trueup",
                            "charge",
                            "credit_paid",
                            "credit_promotional",
                            "credit_refund",
                            "credit_plan_allowance",
                            "carry",
                            "refund",
                            "dispute",
                            "reversal",
                        ],
                    )
                ),
                name="invoicing_line_kind_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="invoicesequence",
            constraint=models.UniqueConstraint(fields=("issuer", "year", "kind"), name="invoicing_sequence_unique"),
        ),
        migrations.RunPython(_on_postgresql(GUARD), _on_postgresql(GUARD_BEFORE)),
    ]
