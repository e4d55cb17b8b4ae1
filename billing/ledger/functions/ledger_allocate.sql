-- Record which grants pay for a charge, in the consumption order of DESIGN decision 4 (written here and nowhere
-- else): plan allowance first, then the earliest expiry (none last), then promotional, refund, paid, then the
-- oldest. What no grant covers is an unfunded draw (overdraft). The caller has locked the wallet row.
CREATE OR REPLACE FUNCTION ledger_allocate(p_wallet bigint, p_transaction bigint, p_amount bigint) RETURNS void
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
