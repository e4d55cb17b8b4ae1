-- Capture part of an open hold (or release / expire it) and allocate the charge to grants; raise LD001 when the
-- hold is not open (settled, expired, unknown, or a capture larger than the hold).
CREATE OR REPLACE FUNCTION ledger_settle(
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
