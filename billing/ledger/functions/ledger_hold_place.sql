-- Reserve credit for a request, or raise LD002 when available + overdraft is short (its DETAIL: what the wallet
-- can spend and its currency). The rows are written first and the wallet row is locked last, by one conditional
-- UPDATE, so the lock is held only for that update and the commit.
CREATE OR REPLACE FUNCTION ledger_hold_place(
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
