-- Trigger function: the journal entries one INSERT writes balance per transaction (sum zero, two legs at least).
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
