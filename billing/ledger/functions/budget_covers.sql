-- Whether a budget (billing.metering.models.Budget: its organization, scope, workflow and API key) covers a call of
-- `organization` made with `api_key` under `workflow`: the organization's own budgets cover all its calls, a
-- workflow's the calls tagged with it, an API key's the calls made with it. The one place this is written: the hold
-- claims from (ledger_hold_place_budgeted), the settle and a reported event count against
-- (billing.metering.budgets SETTLE_WITH, CHARGE) the budgets it names. A plain SQL expression, IMMUTABLE: the
-- planner inlines it where it is called, so it costs nothing and the organization's index still serves.
CREATE OR REPLACE FUNCTION budget_covers(
    b_organization bigint, b_scope text, b_workflow text, b_api_key bigint,
    organization bigint, workflow text, api_key bigint
) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT b_organization = organization
       AND (b_scope = 'organization'
            OR (b_scope = 'workflow' AND b_workflow = workflow)
            OR (b_scope = 'api_key' AND b_api_key = api_key))
$$;
