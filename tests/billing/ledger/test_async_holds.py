"""The gateway's path: holds placed and settled on a psycopg async connection, one statement / one pipeline each."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from billing.ledger import services
from billing.ledger.errors import HoldNotOpen, IdempotencyConflict, InsufficientCredit
from billing.ledger.models import GrantDraw, Hold
from billing.usage.models import UsageRecord
from core import pg
from tests.billing.ledger.conftest import balances, fund, usd

pytestmark = pytest.mark.django_db(transaction=True)
# The two ways a settle carries more writes: attached to its own statement, or as statements of its pipeline.
SENT_WITH = pytest.mark.parametrize("how", ["attached", "also"])


def sent_with(how: str, statement: tuple[str, dict]) -> dict:
    return {"attached": statement} if how == "attached" else {"also": [statement]}


@pytest.fixture
async def conn():
    pool = await pg.pool()
    async with pool.connection() as connection:
        yield connection
    await pg.pool_close()
    await sync_to_async(connections.close_all)()  # the connection sync_to_async's thread opened


@SENT_WITH
async def test_place_then_capture_with_a_usage_record_in_the_same_transaction(org, wallet, conn, how):
    grant_id = await sync_to_async(fund)(org, "10.00")
    from billing.pricing.services import price_book_seed

    await sync_to_async(price_book_seed)()
    placed = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="req-a", actor="key:1"
    )
    assert (placed.available_nano, placed.held_nano) == (usd("9.00"), usd("1.00"))
    record = (
        "INSERT INTO usage_usagerecord (organization_id, source, request_id, endpoint, workflow, model_id, "
        "service_tier, status, input_tokens, cached_input_tokens, output_tokens, estimated_input_tokens, "
        "estimated_output_tokens, usage_reported, drift_flagged, charge_nano, quota_tokens, commitment_tokens, "
        "lines, hold_id, latency_ms) SELECT %(org)s, 'gateway', 'req-a', 'chat', '', id, 'default', 'ok', 10, 0, "
        "5, 10, 5, true, false, %(charge)s, 0, 0, '[]', %(hold)s, 3 FROM pricing_aimodel WHERE slug = 'demo'"
    )
    settled = await services.ahold_settle(
        conn,
        hold_id=placed.hold_id,
        status="captured",
        captured_nano=usd("0.25"),
        actor="key:1",
        **sent_with(how, (record, {"org": org.pk, "charge": usd("0.25"), "hold": placed.hold_id})),
    )
    assert (settled.available_nano, settled.held_nano, settled.captured_nano) == (usd("9.75"), 0, usd("0.25"))
    assert await sync_to_async(balances)(wallet) == (usd("9.75"), 0)
    draws = [
        d
        async for d in GrantDraw.objects.filter(transaction_id=settled.transaction_id).values_list(
            "grant_id", "amount_nano"
        )
    ]
    assert draws == [(grant_id, usd("0.25"))]
    assert await UsageRecord.objects.filter(hold_id=placed.hold_id, charge_nano=usd("0.25")).aexists()


@SENT_WITH
async def test_a_settle_that_finds_the_hold_closed_writes_nothing(org, wallet, conn, how):
    await sync_to_async(fund)(org, "10.00")
    placed = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="req-b", actor="key:1"
    )
    first = await services.ahold_settle(conn, hold_id=placed.hold_id, status="released", captured_nano=0, actor="t")
    marker = (
        "INSERT INTO ledger_wallet (organization_id, currency, available_nano, held_nano, "
        "overdraft_limit_nano, unfunded_nano) VALUES (%(org)s, 'EUR', 0, 0, 0, 0)",
        {"org": org.pk},
    )
    again = await services.ahold_settle(
        conn, hold_id=placed.hold_id, status="released", captured_nano=0, actor="t", **sent_with(how, marker)
    )
    assert (again.replayed, again.transaction_id) == (True, first.transaction_id)
    with pytest.raises(HoldNotOpen):
        await services.ahold_settle(
            conn, hold_id=placed.hold_id, status="captured", captured_nano=1, actor="t", **sent_with(how, marker)
        )
    from billing.ledger.models import Wallet

    assert not await Wallet.objects.filter(currency="EUR").aexists()  # rolled back with the refusal
    assert await sync_to_async(balances)(wallet) == (usd("10.00"), 0)


async def test_insufficient_credit_and_replayed_keys(org, wallet, conn):
    await sync_to_async(fund)(org, "1.00")
    with pytest.raises(InsufficientCredit):
        await services.ahold_place(conn, wallet_id=wallet.pk, amount_nano=usd("2.00"), idempotency_key="k", actor="t")
    first = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("0.50"), idempotency_key="k", actor="t"
    )
    again = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("0.50"), idempotency_key="k", actor="t"
    )
    assert (again.hold_id, again.replayed) == (first.hold_id, True)
    with pytest.raises(IdempotencyConflict):
        await services.ahold_place(conn, wallet_id=wallet.pk, amount_nano=usd("0.60"), idempotency_key="k", actor="t")
    assert await Hold.objects.acount() == 1


@SENT_WITH
async def test_when_a_statement_sent_with_the_settle_fails_the_settle_does_not_land(org, wallet, conn, how):
    import psycopg

    await sync_to_async(fund)(org, "10.00")
    placed = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("1.00"), idempotency_key="req-c", actor="key:1"
    )
    failing = ("INSERT INTO ledger_wallet (organization_id, currency) VALUES (%(org)s, NULL)", {"org": org.pk})
    with pytest.raises(psycopg.errors.NotNullViolation):
        await services.ahold_settle(
            conn,
            hold_id=placed.hold_id,
            status="captured",
            captured_nano=usd("0.50"),
            actor="t",
            **sent_with(how, failing),
        )
    assert (await Hold.objects.aget(pk=placed.hold_id)).status == "open"
    assert await sync_to_async(balances)(wallet) == (usd("9.00"), usd("1.00"))
    settled = await services.ahold_settle(
        conn, hold_id=placed.hold_id, status="captured", captured_nano=usd("0.50"), actor="t"
    )
    assert (settled.available_nano, settled.replayed) == (usd("9.50"), False)


async def test_refusals_inside_the_callers_transaction_need_no_second_statement(org, wallet, conn):
    """A caller that holds and does more in one transaction (the gateway with a key's spend limit, or a settle
    with plan quotas) gets the ledger's own errors, not an aborted-transaction error."""
    await sync_to_async(fund)(org, "1.00")
    with pytest.raises(InsufficientCredit) as refused:
        async with conn.transaction():
            await services.ahold_place(
                conn, wallet_id=wallet.pk, amount_nano=usd("2.00"), idempotency_key="in-txn", actor="t"
            )
    assert refused.value.spendable_nano == usd("1.00")
    placed = await services.ahold_place(
        conn, wallet_id=wallet.pk, amount_nano=usd("0.50"), idempotency_key="h", actor="t"
    )
    await services.ahold_settle(conn, hold_id=placed.hold_id, status="released", captured_nano=0, actor="t")
    with pytest.raises(HoldNotOpen):
        async with conn.transaction():
            await services.ahold_settle(conn, hold_id=placed.hold_id, status="captured", captured_nano=1, actor="t")
    assert await sync_to_async(balances)(wallet) == (usd("1.00"), 0)
