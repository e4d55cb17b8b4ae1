"""The claims rating makes on period counters, for PostgreSQL. The same text runs through Django's connection
(services.usage_rate) and a psycopg async connection (services.ausage_rate, the gateway's settle).

Each claim is one statement on one counter row: INSERT ... ON CONFLICT DO UPDATE creates the period's row on
first use and otherwise updates it in place under its row lock, and RETURNING says what this claim got. The
grant is computed from the row as it stands when the lock is held, so concurrent claims queue on the row and
each sees the one before it: they can never hand out more than the period holds (the CHECK
used_tokens <= limit_tokens backs that up). Claims run in the caller's transaction, which then charges the
usage: both land, or neither does.

Lock order: a usage claims its quota counters (a model's own before its group's), then its commitments' (by
id), then its tier counter, and only then does the caller touch the wallet row (the ledger's settle). Services
that update several counters (plan changes, renewals) take them in the same order, before any wallet work.

Parameters are psycopg's named style with explicit casts, so the plans stay stable whatever the values.
"""

# Take up to `want` tokens from a quota or commitment counter; returns the tokens granted (0 when the period is
# used up), or no row when the period is closed. A counter first claimed here starts with `limit_tokens`.
CLAIM_ALLOWANCE = """
INSERT INTO pricing_periodcounter AS c
       (organization_id, kind, owner_id, scope_key, period_start, period_end, limit_tokens, used_tokens,
        rollover_tokens, last_claim_tokens, volume_nano, trued_up_nano, trued_up_volume_nano)
VALUES (%(organization_id)s::bigint, %(kind)s::text, %(owner_id)s::bigint, %(scope_key)s::text,
        %(period_start)s::timestamptz, %(period_end)s::timestamptz, %(limit)s::bigint,
        LEAST(%(want)s::bigint, %(limit)s::bigint), 0, LEAST(%(want)s::bigint, %(limit)s::bigint), 0, 0, 0)
ON CONFLICT (organization_id, kind, owner_id, scope_key, period_start) DO UPDATE
   SET used_tokens = c.used_tokens + LEAST(%(want)s::bigint, GREATEST(c.limit_tokens - c.used_tokens, 0)),
       last_claim_tokens = LEAST(%(want)s::bigint, GREATEST(c.limit_tokens - c.used_tokens, 0))
 WHERE c.closed_at IS NULL
RETURNING c.last_claim_tokens
"""

# Add `amount` of volume to the organization's tier counter for the period; returns the volume before it.
# Volume is always added, even after the period's true-up: a late claim is then trued up by the next run.
CLAIM_TIER = """
INSERT INTO pricing_periodcounter AS c
       (organization_id, kind, owner_id, scope_key, period_start, period_end, limit_tokens, used_tokens,
        rollover_tokens, last_claim_tokens, volume_nano, trued_up_nano, trued_up_volume_nano)
VALUES (%(organization_id)s::bigint, 'tier', %(owner_id)s::bigint, %(scope_key)s::text,
        %(period_start)s::timestamptz, %(period_end)s::timestamptz, NULL, 0, 0, 0, %(amount)s::bigint, 0, 0)
ON CONFLICT (organization_id, kind, owner_id, scope_key, period_start) DO UPDATE
   SET volume_nano = c.volume_nano + %(amount)s::bigint
RETURNING c.volume_nano - %(amount)s::bigint
"""
