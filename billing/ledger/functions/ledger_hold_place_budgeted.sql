-- ledger_hold_place, and the same hold claimed from every hard budget that covers the call (budget_covers: the
-- organization's, the call's workflow's, the call's API key's, each in its current UTC period), in the
-- same statement: no hard budget can be passed by calls racing for it, and an organization without budgets pays
-- one indexed lookup more. A hard budget that the claim would take past its amount (spent + held + this hold)
-- raises MB001, undoing the hold; its DETAIL is a JSON object naming the budget and what it has left. Alert-only
-- budgets refuse nothing, so they are not claimed here: the settle counts what the call cost against them
-- (billing.metering.budgets.SETTLE_WITH), two row writes fewer per call. `budgets` is the number of budgets that
-- cover the call, claimed or not (the settle counts the others). Lock order: the wallet row
-- (ledger_hold_place) first, then the budgets' counters by id, as in the settle.
CREATE OR REPLACE FUNCTION ledger_hold_place_budgeted(
    p_wallet bigint, p_amount bigint, p_key text, p_actor text, p_ttl_seconds double precision, p_reason text,
    p_organization bigint, p_api_key bigint, p_workflow text, p_request text
) RETURNS TABLE (
    hold_id bigint, expires_at timestamptz, available_nano bigint, held_nano bigint,
    replayed boolean, hold_wallet_id bigint, hold_amount_nano bigint, budgets integer
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p record;
    b record;
    counter_id bigint;
    used bigint;
    start timestamptz;
    covering integer := 0;
BEGIN
    SELECT * INTO p FROM ledger_hold_place(p_wallet, p_amount, p_key, p_actor, p_ttl_seconds, p_reason);
    -- A replay made its claims the first time.
    IF NOT p.replayed THEN
        FOR b IN
            SELECT mb.id, mb.scope, mb.workflow, mb.api_key_id, mb.amount_nano, mb.period, mb.mode
              FROM metering_budget mb
             WHERE budget_covers(mb.organization_id, mb.scope, mb.workflow, mb.api_key_id,
                                 p_organization, p_workflow, p_api_key)
             ORDER BY mb.id
        LOOP
            covering := covering + 1;
            CONTINUE WHEN b.mode <> 'hard';
            start := date_trunc(b.period, now(), 'UTC');
            counter_id := NULL;
            INSERT INTO metering_budgetspend AS bs (budget_id, window_start, spent_nano, held_nano, updated_at)
            SELECT b.id, start, 0, p_amount, now()
             WHERE p_amount <= b.amount_nano
                ON CONFLICT (budget_id, window_start) DO UPDATE
               SET held_nano = bs.held_nano + EXCLUDED.held_nano, updated_at = now()
             WHERE bs.spent_nano + bs.held_nano + EXCLUDED.held_nano <= b.amount_nano
            RETURNING bs.id INTO counter_id;
            IF counter_id IS NULL THEN
                SELECT bs.spent_nano + bs.held_nano INTO used
                  FROM metering_budgetspend bs WHERE bs.budget_id = b.id AND bs.window_start = start;
                RAISE EXCEPTION USING MESSAGE = 'budget_exceeded', ERRCODE = 'MB001', DETAIL = json_build_object(
                    'budget_id', b.id, 'scope', b.scope, 'workflow', b.workflow, 'api_key_id', b.api_key_id,
                    'period', b.period, 'amount_nano', b.amount_nano, 'used_nano', coalesce(used, 0),
                    'window_start', start,
                    -- In UTC, whatever the session's time zone (a month or a day added there could be off).
                    'resets_at', (start AT TIME ZONE 'UTC' + ('1 ' || b.period)::interval) AT TIME ZONE 'UTC'
                )::text;
            END IF;
            INSERT INTO metering_budgetspendhold (budget_spend_id, request_id, amount_nano, created_at)
            VALUES (counter_id, p_request, p_amount, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT p.hold_id, p.expires_at, p.available_nano, p.held_nano, p.replayed, p.hold_wallet_id,
                        p.hold_amount_nano, covering;
END $$;
