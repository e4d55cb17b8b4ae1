"""The close's aggregation, in PostgreSQL: one statement turns the periods of any number of invoices (one, or a
whole batch of organizations closing the same day) into their lines, and one more sets their totals. The same
pieces are summed per UTC day by the daily rollup (services.rollup), and a close adds up the rolled-up days of its
period with what it reads from the ledger for the rest (see PIECES).

What belongs to a period is decided by the ledger's clock: a charge is in the period its journal transaction was
booked in (`created_at` in [start, end)), so usage reported late (an event whose `occurred_at` is in a closed
period) is booked now and lands on the next invoice, never nowhere. A usage record goes with its charge: the
settle transaction of its hold (gateway calls) or its debit (reported events, keyed "debit:<request id>"); a
record that cost no credit and has no hold (a reported event fully covered by a quota) goes by its own time.

Lines, in order:
1. usage: per model x price version x service tier x token kind x source (credit, quota, commitment) x rate x
   factor x discount, summed from the usage records' rating lines (billing.pricing.rating.ChargeLine);
2. charges: every other spent transaction of the period, one line each (plan fees and prorations, commitment
   fees, tier true-ups, and any charge with no usage record); and the plan and commitment fees prepaid credit
   could not pay (billing.pricing.services.fees), one line each with its fee's own period, not yet in the ledger:
   the invoice's payment pays each with a debit under the fee's own key, which belongs to this invoice and so is
   left out of the period it is booked in;
3. credit applied: the grant draws of the period's charges, per grant kind, negative;
4. for the record, not in the total: credit refunded to the card, credit withdrawn by card disputes, credit
   returned by volume-tier true-ups (a refund grant, spent later as credit), and the committed tokens a
   commitment month left unused (use-or-lose: its fee paid for them, nothing more is charged).
What no grant covered (the unfunded draws: overdraft) and the fees credit could not pay are what the invoice asks
to be paid.
"""

# The pieces of invoice lines that a stretch of the ledger adds up to, per bucket (an invoice, or a wallet's day in
# the daily rollup). The statement that uses them defines two CTEs first: `rng` (bucket, wallet_id,
# organization_id, range_start, range_end), the wallets' time ranges to read, and `orng` (bucket, organization_id,
# range_start, range_end), the organizations' ranges for the usage that went by its organization (see the module's
# doc); %(lo)s and %(hi)s bound every range and %(wallets)s lists the wallets (NULL: all), so the journal is read
# by time, one stretch for the whole batch, with its BRIN index (a join on rng instead makes the planner read each
# wallet's whole history by its wallet index). Each piece is one of: a usage key's sums (kind "usage"); a charge,
# refund or true-up transaction (one piece each); a grant kind's draws ("credit_<grant kind>"); the bucket's spent
# credit and what no grant covered of it ("ledger": amount and unfunded). Pieces of the same key add up, whatever
# the stretches they were read from: a period's lines are the sum of its days' pieces.
PIECES = """
settled_fees AS (
    -- Debits that paid fees an earlier invoice listed (see the module's doc): on that invoice, not this one.
    SELECT debit_transaction_id FROM pricing_subscriptionperiod
     WHERE invoiced_at IS NOT NULL AND debit_transaction_id IS NOT NULL
    UNION ALL
    SELECT debit_transaction_id FROM pricing_commitmentcharge
     WHERE invoiced_at IS NOT NULL AND debit_transaction_id IS NOT NULL
),
journal AS MATERIALIZED (
    SELECT t.id, t.wallet_id, t.created_at, t.kind, t.category, t.hold_id, t.idempotency_key, t.reason
      FROM ledger_journaltransaction t
     WHERE %(lo)s::timestamptz < %(hi)s::timestamptz  -- no stretch to read (every day rolled up): nothing planned
       AND t.created_at >= %(lo)s AND t.created_at < %(hi)s
       AND (%(wallets)s::bigint[] IS NULL OR t.wallet_id = ANY(%(wallets)s::bigint[]))
       AND (t.kind IN ('capture', 'release', 'expiry', 'debit', 'refund')
            OR (t.kind = 'grant' AND t.idempotency_key LIKE 'grant:tier-trueup:%%'))
),
txn AS MATERIALIZED (
    SELECT r.bucket, t.id, t.kind, t.category, t.hold_id, t.idempotency_key, t.reason,
           coalesce(e.amount_nano, 0) AS spent
      FROM journal t
      JOIN rng r ON t.wallet_id = r.wallet_id AND t.created_at >= r.range_start AND t.created_at < r.range_end
      LEFT JOIN ledger_journalentry e ON e.transaction_id = t.id AND e.account = 'spent'
     WHERE NOT (t.category IN ('plan_fee', 'commitment') AND t.id IN (SELECT debit_transaction_id FROM settled_fees))
),
-- Each transaction with the usage record it charged, if any: a hold's settle transaction and the record of that
-- hold (one per hold), a reported event's debit ("debit:<request id>") and its record.
txu AS (
    SELECT t.*, u.id AS usage_id, u.model_id, u.service_tier, u.lines
      FROM txn t LEFT JOIN usage_usagerecord u ON u.hold_id = t.hold_id
     WHERE t.hold_id IS NOT NULL
    UNION ALL
    SELECT t.*, u.id, u.model_id, u.service_tier, u.lines
      FROM txn t
      LEFT JOIN usage_usagerecord u
        ON u.request_id = substr(t.idempotency_key, 7)
       AND t.kind = 'debit' AND t.category = 'usage' AND t.idempotency_key LIKE 'debit:%%'
     WHERE t.hold_id IS NULL
),
usage AS (
    SELECT bucket, true AS by_wallet, usage_id AS id, model_id, service_tier, lines FROM txu
     WHERE usage_id IS NOT NULL
    UNION ALL
    SELECT r.bucket, false, u.id, u.model_id, u.service_tier, u.lines
      FROM orng r JOIN usage_usagerecord u
        ON u.organization_id = r.organization_id AND u.created_at >= r.range_start AND u.created_at < r.range_end
     WHERE %(lo)s::timestamptz < %(hi)s::timestamptz
       AND u.hold_id IS NULL AND u.charge_nano = 0 AND u.created_at >= %(lo)s AND u.created_at < %(hi)s
),
-- Each rating line is read once into typed columns (jsonb_to_recordset), not field by field.
usage_pieces AS (
    SELECT u.bucket, u.by_wallet, u.model_id, nullif(l.price_version_id, '')::bigint AS price_version_id,
           u.service_tier, l.kind AS token_kind, l.source, coalesce(l.rate_micro_per_mtok, 0) AS rate,
           coalesce(l.factor_bps, 10000) AS factor, coalesce(l.discount_bps, 0) AS discount,
           sum(l.tokens) AS tokens, sum(l.amount_nano) AS amount, count(*) AS requests, array_agg(u.id) AS usage_ids
      FROM usage u
     CROSS JOIN LATERAL jsonb_to_recordset(u.lines) AS l(
               kind text, source text, tokens bigint, rate_micro_per_mtok bigint, factor_bps bigint,
               discount_bps bigint, amount_nano bigint, price_version_id text)
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
),
all_draws AS (
    SELECT t.bucket, d.id, d.grant_id, d.amount_nano
      FROM txn t JOIN ledger_grantdraw d ON d.transaction_id = t.id
     WHERE t.spent > 0
),
pieces AS (
    SELECT bucket, by_wallet, 'usage' AS kind, '' AS description, model_id, price_version_id, token_kind,
           service_tier, source, rate, factor, discount, tokens, requests, amount, 0::bigint AS unfunded, usage_ids,
           '{}'::bigint[] AS transaction_ids, '{}'::bigint[] AS draw_ids, '' AS sort_key
      FROM usage_pieces
    UNION ALL
    -- Every other spent transaction: a charge line of its own.
    SELECT c.bucket, true,
           CASE c.category WHEN 'plan_fee' THEN 'plan_fee' WHEN 'commitment' THEN 'commitment_fee'
                           WHEN 'tier_trueup' THEN 'tier_trueup' ELSE 'charge' END,
           left(coalesce(nullif(c.reason, ''), c.kind || ' ' || c.id), 500), NULL, NULL, '', '', 'credit', NULL,
           NULL, NULL, 0, 0, c.spent, 0, '{}'::bigint[], ARRAY[c.id], '{}'::bigint[], '0' || lpad(c.id::text, 20, '0')
      FROM txu c
     WHERE c.spent > 0 AND c.usage_id IS NULL
    UNION ALL
    SELECT d.bucket, true, 'credit_' || g.kind,
           CASE g.kind WHEN 'paid' THEN 'Paid credit applied' WHEN 'promotional' THEN 'Promotional credit applied'
                       WHEN 'refund' THEN 'Refund credit applied' ELSE 'Plan credit applied' END,
           NULL, NULL, '', '', g.kind, NULL, NULL, NULL, 0, 0, -sum(d.amount_nano), 0, '{}'::bigint[],
           '{}'::bigint[], array_agg(d.id),
           CASE g.kind WHEN 'plan_allowance' THEN '0' WHEN 'promotional' THEN '1' WHEN 'refund' THEN '2' ELSE '3' END
      FROM all_draws d JOIN ledger_grant g ON g.id = d.grant_id
     GROUP BY d.bucket, g.kind
    UNION ALL
    SELECT t.bucket, true,
           CASE WHEN t.idempotency_key LIKE 'refund:dispute-%%' THEN 'dispute' ELSE 'refund' END,
           left(coalesce(nullif(t.reason, ''), 'refund ' || t.id), 500), NULL, NULL, '', '', '', NULL, NULL, NULL,
           0, 0, -e.amount_nano, 0, '{}'::bigint[], ARRAY[t.id], '{}'::bigint[], '0' || lpad(t.id::text, 20, '0')
      FROM txn t JOIN ledger_journalentry e ON e.transaction_id = t.id AND e.account = 'refunded'
     WHERE t.kind = 'refund'
    UNION ALL
    SELECT t.bucket, true, 'tier_trueup_credit',
           left(coalesce(nullif(t.reason, ''), 'volume-tier true-up ' || t.id), 500), NULL, NULL, '', '', '', NULL,
           NULL, NULL, 0, 0, e.amount_nano, 0, '{}'::bigint[], ARRAY[t.id], '{}'::bigint[],
           '1' || lpad(t.id::text, 20, '0')
      FROM txn t JOIN ledger_journalentry e ON e.transaction_id = t.id AND e.account = 'funding_refund'
     WHERE t.kind = 'grant'
    UNION ALL
    SELECT s.bucket, true, 'ledger', '', NULL, NULL, '', '', '', NULL, NULL, NULL, 0, 0, s.spent,
           coalesce(u.unfunded, 0), '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], ''
      FROM (SELECT bucket, sum(spent) AS spent FROM txn GROUP BY bucket) s
      LEFT JOIN (SELECT bucket, sum(amount_nano) AS unfunded FROM all_draws WHERE grant_id IS NULL GROUP BY bucket) u
        ON u.bucket = s.bucket
)"""

# The pieces' columns, in order (after bucket and by_wallet), as DailyRollup stores them.
_PIECE_COLUMNS = """kind, description, model_id, price_version_id, token_kind, service_tier, source,
rate_micro_per_mtok, factor_bps, discount_bps, tokens, requests, amount_nano, unfunded_nano, usage_ids,
transaction_ids, draw_ids, sort_key"""

# One UTC day of every wallet, summed into DailyRollup (%(day)s; %(lo)s and %(hi)s its start and end).
ROLLUP_INSERT = (
    "WITH"  # noqa: S608 (constant SQL text; every value is a parameter)
    + """
rng AS (
    SELECT w.id AS bucket, w.id AS wallet_id, w.organization_id, %(lo)s::timestamptz AS range_start,
           %(hi)s::timestamptz AS range_end
      FROM ledger_wallet w
),
orng AS (
    SELECT o.id AS bucket, o.id AS organization_id, %(lo)s::timestamptz AS range_start,
           %(hi)s::timestamptz AS range_end
      FROM accounts_organization o
),"""
    + PIECES
    + """
INSERT INTO invoicing_dailyrollup (day, organization_id, wallet_id, """
    + _PIECE_COLUMNS
    + """)
SELECT %(day)s, CASE WHEN p.by_wallet THEN w.organization_id ELSE p.bucket END,
       CASE WHEN p.by_wallet THEN p.bucket END, p.kind, p.description, p.model_id, p.price_version_id, p.token_kind,
       p.service_tier, p.source, p.rate, p.factor, p.discount, p.tokens, p.requests, p.amount, p.unfunded,
       p.usage_ids, p.transaction_ids, p.draw_ids, p.sort_key
  FROM pieces p LEFT JOIN ledger_wallet w ON p.by_wallet AND w.id = p.bucket
"""
)

# A rolled-up day's rows (%(day)s) added to their calendar month's (MonthRollup), in the day's transaction.
MONTH_ADD = """
INSERT INTO invoicing_monthrollup AS m (
    month, organization_id, wallet_id, kind, description, model_id, price_version_id, token_kind, service_tier,
    source, rate_micro_per_mtok, factor_bps, discount_bps, sort_key, tokens, requests, amount_nano, unfunded_nano,
    rollup_ids
)
SELECT date_trunc('month', r.day)::date, r.organization_id, r.wallet_id, r.kind, r.description, r.model_id,
       r.price_version_id, r.token_kind, r.service_tier, r.source, r.rate_micro_per_mtok, r.factor_bps,
       r.discount_bps, r.sort_key, r.tokens, r.requests, r.amount_nano, r.unfunded_nano, ARRAY[r.id]
  FROM invoicing_dailyrollup r
 WHERE r.day = %(day)s
    ON CONFLICT ON CONSTRAINT invoicing_month_rollup_key DO UPDATE
   SET tokens = m.tokens + EXCLUDED.tokens, requests = m.requests + EXCLUDED.requests,
       amount_nano = m.amount_nano + EXCLUDED.amount_nano, unfunded_nano = m.unfunded_nano + EXCLUDED.unfunded_nano,
       rollup_ids = m.rollup_ids || EXCLUDED.rollup_ids
"""

# One statement per batch of invoices (all in `closing`: %(invoices)s): their pieces, read from the ledger for the
# stretches of their periods no rollup covers (%(raw_invoices)s, %(raw_starts)s, %(raw_ends)s: parallel arrays),
# from MonthRollup for the invoices of a whole calendar month whose days are all rolled up (%(month_invoices)s),
# and from DailyRollup for the other invoices' rolled-up days (%(rolled_days)s) wholly inside their periods, added
# up into their lines
# (inserted by a data-modifying CTE). A line names the rollup rows it adds up (rollup_ids) rather than copying the
# ids they name: copying two million ids into a thousand invoices' lines was half the close. The statement returns,
# per invoice, the journal's spent credit and what no grant covered of it (the unfunded draws), summed the same
# way, to check the lines against, and what its lines add up to.
LINES_INSERT = (
    "WITH"  # noqa: S608 (constant SQL text; every value is a parameter)
    + """
inv AS (
    SELECT id, wallet_id, organization_id, period_start, period_end FROM invoicing_invoice
     WHERE id = ANY(%(invoices)s::bigint[])
),
rng AS (
    SELECT x.bucket, i.wallet_id, i.organization_id, x.range_start, x.range_end
      FROM unnest(%(raw_invoices)s::bigint[], %(raw_starts)s::timestamptz[], %(raw_ends)s::timestamptz[])
           AS x(bucket, range_start, range_end)
      JOIN inv i ON i.id = x.bucket
),
orng AS (SELECT bucket, organization_id, range_start, range_end FROM rng),"""
    + PIECES
    + """,
rolled AS (
    SELECT i.id AS bucket, r.kind, r.description, r.model_id, r.price_version_id, r.token_kind, r.service_tier,
           r.source, r.rate_micro_per_mtok, r.factor_bps, r.discount_bps, r.tokens, r.requests, r.amount_nano,
           r.unfunded_nano, '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], r.sort_key, ARRAY[r.id] AS rollup_ids
      FROM inv i
      JOIN invoicing_dailyrollup r
        ON r.organization_id = i.organization_id AND (r.wallet_id = i.wallet_id OR r.wallet_id IS NULL)
     WHERE r.day = ANY(%(rolled_days)s::date[])
       AND r.day::timestamp AT TIME ZONE 'UTC' >= i.period_start
       AND (r.day + 1)::timestamp AT TIME ZONE 'UTC' <= i.period_end
       AND i.id <> ALL(%(month_invoices)s::bigint[])
    UNION ALL
    -- An invoice of a whole calendar month whose days are all rolled up: the month's sums of them.
    SELECT i.id, r.kind, r.description, r.model_id, r.price_version_id, r.token_kind, r.service_tier, r.source,
           r.rate_micro_per_mtok, r.factor_bps, r.discount_bps, r.tokens, r.requests, r.amount_nano,
           r.unfunded_nano, '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], r.sort_key, r.rollup_ids
      FROM inv i
      JOIN invoicing_monthrollup r
        ON r.month = (i.period_start AT TIME ZONE 'UTC')::date AND r.organization_id = i.organization_id
       AND (r.wallet_id = i.wallet_id OR r.wallet_id IS NULL)
     WHERE i.id = ANY(%(month_invoices)s::bigint[])
),
merged AS (
    SELECT bucket, kind, description, model_id, price_version_id, token_kind, service_tier, source, rate, factor,
           discount, tokens, requests, amount, unfunded, usage_ids, transaction_ids, draw_ids, sort_key,
           '{}'::bigint[] AS rollup_ids
      FROM pieces
    UNION ALL
    SELECT * FROM rolled
),
-- The pieces of one key added up (a charge, refund or true-up is one transaction, so one piece: nothing to add).
sums AS (
    SELECT bucket AS invoice_id, kind, description, model_id, price_version_id, token_kind, service_tier, source,
           rate, factor, discount, sum(tokens) AS tokens, sum(requests) AS requests, sum(amount) AS amount,
           invoicing_ids_cat(usage_ids) AS usage_ids, invoicing_ids_cat(transaction_ids) AS transaction_ids,
           invoicing_ids_cat(draw_ids) AS draw_ids,
           invoicing_ids_cat(rollup_ids) AS rollup_ids,
           sort_key
      FROM merged
     WHERE kind <> 'ledger'
     GROUP BY bucket, kind, description, model_id, price_version_id, token_kind, service_tier, source, rate, factor,
              discount, sort_key
),
fees AS (
    SELECT i.id AS invoice_id, 'plan_fee' AS kind, 'subscription_period:' || f.id AS fee_ref, f.fee_nano AS amount,
           p.name || ' plan, ' || to_char(f.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' to '
               || to_char(f.period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS description,
           f.period_start, f.period_end
      FROM inv i JOIN pricing_subscriptionperiod f ON f.organization_id = i.organization_id
      JOIN pricing_plan p ON p.id = f.plan_id
     WHERE f.invoiced_at IS NOT NULL AND f.debit_transaction_id IS NULL AND f.fee_nano > 0
       AND f.period_start < i.period_end
    UNION ALL
    SELECT i.id, 'commitment_fee', 'commitment_charge:' || f.id, f.amount_nano,
           'reserved commitment ' || f.commitment_id || ', '
               || to_char(f.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' to '
               || to_char(f.period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
           f.period_start, f.period_end
      FROM inv i JOIN pricing_commitmentcharge f ON f.organization_id = i.organization_id
     WHERE f.status = 'due' AND f.amount_nano > 0 AND f.period_start < i.period_end
),
shortfalls AS (
    SELECT i.id AS invoice_id, c.id, c.owner_id, c.limit_tokens - c.used_tokens AS unused, c.period_start,
           c.period_end
      FROM inv i JOIN pricing_periodcounter c ON c.organization_id = i.organization_id
     WHERE c.kind = 'commitment' AND c.period_end > i.period_start AND c.period_end <= i.period_end
       AND c.limit_tokens > c.used_tokens
),
all_lines AS (
    SELECT ul.invoice_id, 1 AS section,
           concat_ws(' ', m.slug, ul.service_tier) || ': ' || replace(ul.token_kind, '_', ' ')
               || CASE ul.source WHEN 'credit' THEN '' ELSE ' (covered by ' || ul.source || ')' END AS description,
           'usage' AS kind, ul.model_id, ul.price_version_id, ul.token_kind, ul.service_tier, ul.source,
           CASE WHEN ul.tokens = 0 THEN ul.requests ELSE ul.tokens END AS quantity,
           CASE WHEN ul.tokens = 0 THEN 'requests' ELSE 'tokens' END AS unit,
           CASE WHEN ul.tokens = 0 THEN NULL ELSE ul.rate END AS rate,
           CASE WHEN ul.tokens = 0 THEN NULL ELSE ul.factor END AS factor,
           CASE WHEN ul.tokens = 0 THEN NULL ELSE ul.discount END AS discount,
           CASE WHEN ul.tokens = 0 THEN ul.amount / ul.requests END AS unit_price,
           ul.amount, ul.usage_ids, '{}'::bigint[] AS transaction_ids, '{}'::bigint[] AS draw_ids, ul.rollup_ids,
           concat_ws('|', m.slug, ul.price_version_id, ul.service_tier, ul.token_kind, ul.source, ul.rate, ul.factor,
                     ul.discount) AS sort_key,
           '' AS fee_ref, NULL::timestamptz AS line_start, NULL::timestamptz AS line_end
      FROM sums ul JOIN pricing_aimodel m ON m.id = ul.model_id
     WHERE ul.kind = 'usage'
    UNION ALL
    -- Charges (2), credit applied (3), and refunds, disputes and true-ups credited (4): one item each.
    SELECT s.invoice_id,
           CASE WHEN s.kind IN ('credit_paid', 'credit_promotional', 'credit_refund', 'credit_plan_allowance') THEN 3
                WHEN s.kind IN ('refund', 'dispute', 'tier_trueup_credit') THEN 4 ELSE 2 END,
           s.description, s.kind, NULL, NULL, '', '', s.source, 1, 'item', NULL, NULL, NULL, s.amount, s.amount,
           '{}'::bigint[], s.transaction_ids, s.draw_ids, s.rollup_ids, s.sort_key, '', NULL, NULL
      FROM sums s
     WHERE s.kind <> 'usage'
    UNION ALL
    SELECT f.invoice_id, 2, f.description, f.kind, NULL, NULL, '', '', 'invoice', 1, 'item', NULL, NULL, NULL,
           f.amount, f.amount, '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], '{}'::bigint[],
           '1' || to_char(f.period_start AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || f.fee_ref, f.fee_ref,
           f.period_start, f.period_end
      FROM fees f
     WHERE NOT EXISTS (SELECT 1 FROM invoicing_invoiceline l WHERE l.fee_ref = f.fee_ref)
    UNION ALL
    SELECT s.invoice_id, 4,
           'reserved commitment ' || s.owner_id || ', ' || to_char(s.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD')
               || ' to ' || to_char(s.period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD')
               || ': committed tokens not used (use-or-lose; paid by its fee)',
           'commitment_shortfall', NULL, NULL, '', '', '', s.unused, 'tokens', NULL, NULL, NULL, NULL, 0,
           '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], '2' || lpad(s.id::text, 20, '0'), '',
           s.period_start,
           s.period_end
      FROM shortfalls s
),
inserted AS (
    INSERT INTO invoicing_invoiceline (
        invoice_id, position, kind, description, model_id, price_version_id, token_kind, service_tier, source,
        quantity, unit, rate_micro_per_mtok, factor_bps, discount_bps, unit_price_nano, amount_nano,
        period_start, period_end, usage_ids, transaction_ids, draw_ids, rollup_ids, fee_ref
    )
    SELECT l.invoice_id, row_number() OVER (PARTITION BY l.invoice_id ORDER BY l.section, l.sort_key), l.kind,
           l.description, l.model_id, l.price_version_id, l.token_kind, l.service_tier, l.source, l.quantity,
           l.unit, l.rate, l.factor, l.discount, l.unit_price, l.amount, coalesce(l.line_start, i.period_start),
           coalesce(l.line_end, i.period_end), l.usage_ids, l.transaction_ids, l.draw_ids, l.rollup_ids, l.fee_ref
      FROM all_lines l JOIN inv i ON i.id = l.invoice_id
    RETURNING invoice_id, kind, amount_nano, fee_ref
),
-- What each invoice's totals are made of: its lines, their credit applied, their charges (lines neither credit nor
-- for the record) and the fees credit could not pay among them.
written AS (
    SELECT invoice_id, count(*) AS lines,
           sum(amount_nano) FILTER (WHERE kind = ANY(%(credit_kinds)s::text[])) AS credit,
           sum(amount_nano) FILTER (WHERE kind <> ALL(%(credit_kinds)s::text[] || %(record_kinds)s::text[])) AS charges,
           sum(amount_nano) FILTER (WHERE fee_ref <> '') AS invoiced
      FROM inserted
     GROUP BY invoice_id
),
totals AS (
    SELECT bucket, sum(amount) AS spent, sum(unfunded) AS unfunded FROM merged WHERE kind = 'ledger' GROUP BY bucket
)
SELECT i.id, coalesce(t.spent, 0), coalesce(t.unfunded, 0), coalesce(w.lines, 0), coalesce(w.charges, 0),
       coalesce(w.credit, 0), coalesce(w.invoiced, 0)
  FROM inv i LEFT JOIN totals t ON t.bucket = i.id LEFT JOIN written w ON w.invoice_id = i.id
"""
)

# What no grant covered among a wallet's charges booked in [start, end) (progressive billing's trigger).
UNFUNDED = """
SELECT coalesce(sum(d.amount_nano), 0)
  FROM ledger_journaltransaction t JOIN ledger_grantdraw d ON d.transaction_id = t.id
 WHERE t.wallet_id = %(wallet)s AND t.created_at >= %(start)s AND t.created_at < %(end)s
   AND t.kind IN ('capture', 'debit') AND d.grant_id IS NULL
"""

# A batch's drafts, in one statement (Django's bulk_update builds a CASE per field and row, slow for hundreds): the
# arrays are parallel, one element per invoice.
DRAFTS_SET = """
UPDATE invoicing_invoice i
   SET charges_nano = v.charges, credit_applied_nano = v.credit, carry_in_nano = v.carry_in,
       total_exact_nano = v.total_exact, total_minor = v.total_minor, carry_out_nano = v.carry_out,
       status = 'draft', drafted_at = %(now)s
  FROM unnest(%(ids)s::bigint[], %(charges)s::bigint[], %(credit)s::bigint[], %(carry_in)s::bigint[],
              %(total_exact)s::bigint[], %(total_minor)s::bigint[], %(carry_out)s::bigint[])
       AS v(id, charges, credit, carry_in, total_exact, total_minor, carry_out)
 WHERE i.id = v.id
"""

# A batch's finalization, in one statement: the arrays are parallel, one element per invoice.
FINALIZE_SET = """
UPDATE invoicing_invoice i
   SET issuer = %(issuer)s, sequence = v.sequence, number = v.number, collection_method = v.method,
       days_until_due = v.days, billed_to = v.billed_to::jsonb, status = 'finalized', finalized_at = %(now)s
  FROM unnest(%(ids)s::bigint[], %(sequences)s::bigint[], %(numbers)s::text[], %(methods)s::text[],
              %(days)s::int[], %(billed_to)s::text[]) AS v(id, sequence, number, method, days, billed_to)
 WHERE i.id = v.id
"""
