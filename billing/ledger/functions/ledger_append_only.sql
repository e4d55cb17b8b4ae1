-- Trigger function: journal transactions, entries and grant draws are append-only (UPDATE and DELETE raise).
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only; book a correcting transaction instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
