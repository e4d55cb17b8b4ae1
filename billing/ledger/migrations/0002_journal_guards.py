"""The ledger's PostgreSQL side. Migration 0003 replaced the functions with their source files in
billing/ledger/functions/, the one place they are written now; this migration keeps the first version for the
databases it was applied to.

Guards:
- journal transactions, entries and grant draws are append-only: UPDATE and DELETE raise;
- every INSERT of journal entries balances: per transaction, the legs it writes sum to zero and there are at
  least two (the services write all legs of a transaction in one statement).

The hot path, one round trip each (billing.ledger.sql calls them, for the synchronous services and the async
gateway alike). Each writes its rows first and takes the wallet's row lock last, so the one row every request
on a wallet must lock is held only for that UPDATE, the grant allocation, and the commit:
- ledger_hold_place: reserve credit for a request, or raise LD002 when available + overdraft is short (its
  DETAIL: what the wallet can spend and its currency);
- ledger_settle: capture part of a hold (or release / expire it), or raise LD001 when it is not open;
- ledger_allocate: record which grants pay for a charge, in consumption order (DESIGN decision 4); what no
  grant covers is an unfunded draw (overdraft).
Inside a PL/pgSQL function each statement takes a new snapshot, so the allocation, run after the wallet row
is locked, sees every grant change committed by earlier holders of that lock.
"""

from django.db import migrations

FUNCTIONS = """
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

CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
BEGIN
    SELECT transaction_id INTO unbalanced FROM new_entries
     GROUP BY transaction_id HAVING sum(amount_nano) <> 0 OR count(*) < 2 LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: the entries of transaction % do not balance', unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_journalentry_balanced AFTER INSERT ON ledger_journalentry
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_balanced();

CREATE FUNCTION ledger_allocate(p_wallet bigint, p_transaction bigint, p_amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    take bigint;
    todo bigint := p_amount;
BEGIN
    IF todo <= 0 THEN
        RETURN;
    END IF;
    FOR g IN
        SELECT id, remaining_nano FROM ledger_grant
         WHERE wallet_id = p_wallet AND remaining_nano > 0
         ORDER BY (kind = 'plan_allowance') DESC,
                  expires_at ASC NULLS LAST,
                  CASE kind WHEN 'promotional' THEN 0 WHEN 'refund' THEN 1 ELSE 2 END,
                  id
    LOOP
        take := LEAST(g.remaining_nano, todo);
        UPDATE ledger_grant SET remaining_nano = remaining_nano - take WHERE id = g.id;
        INSERT INTO ledger_grantdraw (transaction_id, grant_id, amount_nano) VALUES (p_transaction, g.id, take);
        todo := todo - take;
        EXIT WHEN todo = 0;
    END LOOP;
    IF todo > 0 THEN
        INSERT INTO ledger_grantdraw (transaction_id, grant_id, amount_nano) VALUES (p_transaction, NULL, todo);
        UPDATE ledger_wallet SET unfunded_nano = unfunded_nano + todo WHERE id = p_wallet;
    END IF;
END $$;

CREATE FUNCTION ledger_hold_place(
    p_wallet bigint, p_amount bigint, p_key text, p_actor text, p_ttl_seconds double precision, p_reason text
) RETURNS TABLE (
    hold_id bigint, expires_at timestamptz, available_nano bigint, held_nano bigint,
    replayed boolean, hold_wallet_id bigint, hold_amount_nano bigint
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    h record;
    w record;
    t_id bigint;
BEGIN
    -- A replayed key gets its first hold back (the caller checks it asked for the same wallet and amount).
    SELECT id, expires_at, wallet_id, amount_nano INTO h FROM ledger_hold WHERE idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT h.id, h.expires_at, lw.available_nano, lw.held_nano, true, h.wallet_id, h.amount_nano
                       FROM ledger_wallet lw WHERE lw.id = h.wallet_id;
        RETURN;
    END IF;
    INSERT INTO ledger_hold (wallet_id, amount_nano, captured_nano, status, idempotency_key, actor, expires_at)
    VALUES (p_wallet, p_amount, 0, 'open', p_key, p_actor, now() + make_interval(secs => p_ttl_seconds))
    RETURNING id, expires_at INTO h;
    INSERT INTO ledger_journaltransaction (wallet_id, kind, idempotency_key, actor, reason, category, hold_id)
    VALUES (p_wallet, 'hold', 'hold:' || h.id || ':place', p_actor, p_reason, '', h.id)
    RETURNING id INTO t_id;
    INSERT INTO ledger_journalentry (transaction_id, account, amount_nano)
    VALUES (t_id, 'available', -p_amount), (t_id, 'held', p_amount);
    UPDATE ledger_wallet
       SET available_nano = available_nano - p_amount, held_nano = held_nano + p_amount
     WHERE id = p_wallet AND available_nano - p_amount >= -overdraft_limit_nano
    RETURNING available_nano, held_nano INTO w;
    IF NOT FOUND THEN
        -- Raising undoes the rows written above. The detail says what the wallet could spend, so the caller needs
        -- no second statement (it may be inside a transaction this error has just aborted).
        SELECT available_nano + overdraft_limit_nano AS spendable, currency INTO w
          FROM ledger_wallet WHERE id = p_wallet;
        RAISE EXCEPTION USING MESSAGE = 'insufficient_credit', ERRCODE = 'LD002',
            DETAIL = coalesce(w.spendable || ' ' || w.currency, 'no such wallet');
    END IF;
    RETURN QUERY SELECT h.id, h.expires_at, w.available_nano, w.held_nano, false, p_wallet, p_amount;
END $$;

CREATE FUNCTION ledger_settle(
    p_hold bigint, p_status text, p_captured bigint, p_actor text, p_reason text
) RETURNS TABLE (
    transaction_id bigint, wallet_id bigint, amount_nano bigint, available_nano bigint, held_nano bigint
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    h record;
    w record;
    t_id bigint;
BEGIN
    UPDATE ledger_hold SET status = p_status, captured_nano = p_captured, settled_at = now()
     WHERE id = p_hold AND status = 'open' AND amount_nano >= p_captured
    RETURNING id, wallet_id, amount_nano INTO h;
    IF NOT FOUND THEN
        -- Settled before, expired by the sweeper, unknown, or a capture larger than the hold.
        RAISE EXCEPTION USING MESSAGE = 'hold_not_open', ERRCODE = 'LD001';
    END IF;
    INSERT INTO ledger_journaltransaction (wallet_id, kind, idempotency_key, actor, reason, category, hold_id)
    VALUES (
        h.wallet_id,
        CASE p_status WHEN 'captured' THEN 'capture' WHEN 'released' THEN 'release' ELSE 'expiry' END,
        'hold:' || h.id || ':settle', p_actor, p_reason, '', h.id
    )
    RETURNING id INTO t_id;
    INSERT INTO ledger_journalentry (transaction_id, account, amount_nano)
    SELECT t_id, leg.account, leg.amount
      FROM (VALUES ('held', -h.amount_nano), ('spent', p_captured), ('available', h.amount_nano - p_captured))
           AS leg(account, amount)
     WHERE leg.amount <> 0;
    UPDATE ledger_wallet
       SET held_nano = held_nano - h.amount_nano, available_nano = available_nano + h.amount_nano - p_captured
     WHERE id = h.wallet_id
    RETURNING available_nano, held_nano INTO w;
    PERFORM ledger_allocate(h.wallet_id, t_id, p_captured);
    RETURN QUERY SELECT t_id, h.wallet_id, h.amount_nano, w.available_nano, w.held_nano;
END $$;
"""

DROP_FUNCTIONS = """
DROP FUNCTION ledger_settle(bigint, text, bigint, text, text);
DROP FUNCTION ledger_hold_place(bigint, bigint, text, text, double precision, text);
DROP FUNCTION ledger_allocate(bigint, bigint, bigint);
DROP TRIGGER ledger_journalentry_balanced ON ledger_journalentry;
DROP FUNCTION ledger_entries_balanced();
DROP TRIGGER ledger_grantdraw_append_only ON ledger_grantdraw;
DROP TRIGGER ledger_journalentry_append_only ON ledger_journalentry;
DROP TRIGGER ledger_journaltransaction_append_only ON ledger_journaltransaction;
DROP FUNCTION ledger_append_only();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(FUNCTIONS), _on_postgresql(DROP_FUNCTIONS))]
