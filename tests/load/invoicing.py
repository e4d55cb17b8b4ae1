"""Invoicing benchmark: close the billing period of 1,000 organizations holding 1,000,000 usage records in total, up to
finalized invoices, beside the bare GROUP BY over the same rows in the same run; then the Stripe push of those
invoices against localstripe (through tooling/localstripe_launcher.py), as its own figure.

    python -m tests.load.invoicing [--organizations 1000] [--records 1000000] [--skip-stripe]

The rows are written straight in SQL, as the gateway leaves them (a captured hold, its settle transaction with its
legs and grant draw, the usage record with its rating lines), all in October 2026, in time order as they are booked:
half the organizations have paid credit that covered their usage, half used an overdraft. Then what beat did through
the month: each day's rollup (billing.invoicing.services.rollup), timed as its own figure, and the rollup of the
period's last day (whose grace window ends with the period's: the close task rolls it up before it queues the
closes), timed as another. The close runs as beat's tasks run it, one batch of organizations (tasks.BATCH_SIZE,
closed together: one statement per step) after another, in this process; the bare query is the period's usage
grouped per organization, model, price version and service tier, with nothing else.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tests.load.benchdb import bench_database

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
CLOSED_AT = datetime(2026, 11, 1, 1, 0, 1, tzinfo=UTC)  # the grace window over
INPUT_TOKENS, OUTPUT_TOKENS = 1000, 500
INPUT_PRICE, OUTPUT_PRICE = 150_000, 600_000  # gpt-4o-mini, micro-units per million tokens
INPUT_NANO, OUTPUT_NANO = INPUT_TOKENS * INPUT_PRICE // 1000, OUTPUT_TOKENS * OUTPUT_PRICE // 1000
CHARGE_NANO = INPUT_NANO + OUTPUT_NANO

BARE_GROUP_BY = """
SELECT organization_id, model_id, price_version_id, service_tier, count(*), sum(input_tokens),
       sum(cached_input_tokens), sum(output_tokens), sum(charge_nano)
  FROM usage_usagerecord
 WHERE created_at >= %(start)s AND created_at < %(end)s
 GROUP BY 1, 2, 3, 4
"""


def seed(organizations: int, records: int) -> list[int]:
    """The organizations, their wallets (opened in October) and their October usage, written in SQL."""
    from django.db import connection

    from accounts.models import Organization
    from billing.ledger import services as ledger
    from billing.ledger.models import Grant, Wallet
    from billing.pricing.models import AIModel
    from billing.pricing.services import price_book_seed

    price_book_seed()
    model = AIModel.objects.get(slug="gpt-4o-mini")
    version = model.price_versions.order_by("-effective_from").first()
    assert version is not None
    per_org = records // organizations
    orgs = Organization.objects.bulk_create([Organization(name=f"bench {i}") for i in range(organizations)])
    ids = [o.pk for o in orgs]
    for index, org_id in enumerate(ids):
        wallet = ledger.wallet_get_or_create(organization_id=org_id)
        if index % 2 == 0:  # paid credit covering the month's usage exactly
            ledger.grant_create(
                organization_id=org_id,
                kind="paid",
                amount_nano=per_org * CHARGE_NANO,
                idempotency_key=f"bench-{org_id}",
                actor="bench",
            )
        else:
            ledger.wallet_overdraft_set(organization_id=org_id, overdraft_limit_nano=10**15, actor="bench")
        Wallet.objects.filter(pk=wallet.pk).update(created_at=PERIOD_START)
    lines = [
        {"kind": kind, "source": "credit", "tokens": tokens, "rate_micro_per_mtok": price, "factor_bps": 10_000,
         "discount_bps": 0, "amount_nano": amount, "price_version_id": version.pk, "ref": "", "detail": ""}
        for kind, tokens, price, amount in (
            ("input", INPUT_TOKENS, INPUT_PRICE, INPUT_NANO),
            ("output", OUTPUT_TOKENS, OUTPUT_PRICE, OUTPUT_NANO),
        )
    ]  # fmt: skip
    params = {
        "per_org": per_org,
        "charge": CHARGE_NANO,
        "start": PERIOD_START,
        "model": model.pk,
        "version": version.pk,
        "lines": json.dumps(lines),
    }
    with connection.cursor() as cursor:
        # A captured hold per request, spread evenly over the month (each organization's at the same times).
        cursor.execute(
            """
            INSERT INTO ledger_hold (wallet_id, amount_nano, captured_nano, status, idempotency_key, actor,
                                     expires_at, created_at, settled_at)
            SELECT w.id, %(charge)s, %(charge)s, 'captured', 'bench:' || w.id || ':' || g, 'bench',
                   ts, ts, ts
              FROM ledger_wallet w CROSS JOIN generate_series(1, %(per_org)s) g
             CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + (g - 1) * (interval '31 days' / %(per_org)s) AS ts) t
             ORDER BY ts, w.id
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO ledger_journaltransaction (wallet_id, kind, idempotency_key, actor, reason, category,
                                                   hold_id, created_at)
            SELECT h.wallet_id, 'capture', 'hold:' || h.id || ':settle', 'bench', '', '', h.id, h.created_at
              FROM ledger_hold h
             ORDER BY h.id
            """
        )
        cursor.execute(
            """
            INSERT INTO ledger_journalentry (transaction_id, account, amount_nano)
            SELECT t.id, leg.account, leg.amount
              FROM ledger_journaltransaction t
             CROSS JOIN (VALUES ('held', -%(charge)s::bigint), ('spent', %(charge)s::bigint)) AS leg(account, amount)
             WHERE t.kind = 'capture'
             ORDER BY t.id
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO ledger_grantdraw (transaction_id, grant_id, amount_nano)
            SELECT t.id, g.id, %(charge)s
              FROM ledger_journaltransaction t
              LEFT JOIN ledger_grant g ON g.wallet_id = t.wallet_id
             WHERE t.kind = 'capture'
             ORDER BY t.id
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO usage_usagerecord (
                organization_id, api_key_id, source, request_id, endpoint, workflow, model_id, service_tier, status,
                input_tokens, cached_input_tokens, output_tokens, estimated_input_tokens, estimated_output_tokens,
                usage_reported, drift_flagged, price_version_id, charge_nano, quota_tokens, commitment_tokens,
                lines, hold_id, latency_ms, created_at)
            SELECT w.organization_id, NULL, 'gateway', 'bench-' || h.id, 'chat', '', %(model)s, 'default', 'ok',
                   1000, 0, 500, 1000, 500, true, false, %(version)s, %(charge)s, 0, 0, %(lines)s::jsonb, h.id,
                   100, h.created_at
              FROM ledger_hold h JOIN ledger_wallet w ON w.id = h.wallet_id
             ORDER BY h.id
            """,
            params,
        )
    with connection.cursor() as cursor:  # VACUUM runs outside a transaction: a month's autovacuum, at once
        cursor.execute("VACUUM ANALYZE")
    Grant.objects.update(remaining_nano=0)  # spent by the captures above
    return ids


def timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def bare_group_by() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(BARE_GROUP_BY, {"start": PERIOD_START, "end": PERIOD_END})
        return len(cursor.fetchall())


def rollup_days(first: date, last: date) -> int:
    """What beat's rollup task does: each day summed once its grace window is over."""
    from billing.invoicing.services.rollup import rollup_day

    day, rolled = first, 0
    while day <= last:
        rolled += rollup_day(day=day)
        day += timedelta(days=1)
    return rolled


def close_all(ids: list[int]) -> list[int]:
    """What beat's tasks do: the organizations in batches of tasks.BATCH_SIZE, each batch closed together."""
    from billing.invoicing import services, tasks

    closed = []
    for index in range(0, len(ids), tasks.BATCH_SIZE):
        batch = ids[index : index + tasks.BATCH_SIZE]
        # October only (beat, running later, would catch up November too).
        closed += [invoice.pk for invoice in services.invoices_close_due(organization_ids=batch, now=CLOSED_AT)]
    return closed


def push_all(invoice_ids: list[int]) -> int:
    from billing.invoicing.services.stripe_push import invoice_stripe_push

    return sum(1 for invoice_id in invoice_ids if invoice_stripe_push(invoice_id=invoice_id).pushed_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organizations", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--skip-stripe", action="store_true", help="Do not measure the Stripe push.")
    args = parser.parse_args()
    with bench_database("billing_bench_invoicing"):
        from billing.invoicing import selectors, services, tasks  # noqa: F401 (imported before the clock starts)
        from config.celery import app

        # A worker's Celery app is finalized and connected to its broker long before a close: so is this one.
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=3)
        from billing.invoicing.models import Invoice

        ids, seed_seconds = timed(seed, args.organizations, args.records)
        print(f"\nInvoicing: {args.organizations:,} organizations, {args.records:,} usage records in October 2026")
        print(f"(seeded in {seed_seconds:.1f} s)")
        last_day = (PERIOD_END - timedelta(days=1)).date()
        # Through the month, then the period's last day, rolled up by the close task before it queues the closes.
        days, rollup_seconds = timed(rollup_days, PERIOD_START.date(), last_day - timedelta(days=1))
        _, last_day_seconds = timed(rollup_days, last_day, last_day)
        bare_group_by()  # warm the cache, as the close will find it
        groups, bare_seconds = timed(bare_group_by)
        invoice_ids, close_seconds = timed(close_all, ids)
        finalized = Invoice.objects.filter(status="finalized").count()
        print("\n| step | seconds | per organization ms | vs bare GROUP BY |")
        print("|------|--------:|--------------------:|-----------------:|")
        per_org_ms = 1000 * bare_seconds / args.organizations
        print(f"| bare GROUP BY ({groups:,} groups) | {bare_seconds:.2f} | {per_org_ms:.2f} | 1.0x |")
        print(
            f"| daily rollups through the month ({days} days, each after its grace window) | {rollup_seconds:.2f} | "
            f"{1000 * rollup_seconds / args.organizations:.2f} | {rollup_seconds / bare_seconds:.1f}x |"
        )
        print(
            f"| rollup of the period's last day (by the close task, before the closes) | {last_day_seconds:.2f} | "
            f"{1000 * last_day_seconds / args.organizations:.2f} | {last_day_seconds / bare_seconds:.1f}x |"
        )
        print(
            f"| close to finalized ({finalized:,} invoices) | {close_seconds:.2f} | "
            f"{1000 * close_seconds / args.organizations:.2f} | {close_seconds / bare_seconds:.1f}x |"
        )
        sample = selectors.invoices_reconcile(organization_id=Invoice.objects.order_by("id").first().organization_id)  # type: ignore[union-attr]
        print("reconcile of the first organization's invoice:", "agrees" if not sample else sample[:3])
        if not args.skip_stripe:
            stripe_push_measure(invoice_ids)


def stripe_push_measure(invoice_ids: list[int]) -> None:
    """Start localstripe (with the launcher), point the product at it, and push every invoice."""
    import socket

    from django.conf import settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tooling.localstripe_launcher", "--port", str(port), "--from-scratch"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
        pushed, seconds = timed(push_all, invoice_ids)
        print(
            f"\nStripe push (localstripe): {pushed:,} invoices in {seconds:.1f} s "
            f"({1000 * seconds / max(pushed, 1):.1f} ms per invoice: customer, items, invoice, finalize, charge)"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
