"""Concurrency, for real: hundreds of requests at once through the live ASGI server, holds racing on one wallet.

No request can spend credit the organization does not have, no key can pass its spend limit, and the journal
reconciles afterwards; the gateway holds hundreds of open streams at once.
"""

import asyncio

import httpx
import openai
import pytest
from django.db.models import Sum

from billing.ledger import services as ledger
from billing.metering.models import BudgetSpend, BudgetSpendHold
from billing.pricing import rating
from billing.tokens import chat_prompt_tokens
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import MODEL, balances, key_limit, limited_key, reconciled, usd, wait_for

MESSAGES = [{"role": "user", "content": "Count to five."}]
MAX_TOKENS = 10
PRICES = rating.Prices(None, 180_000, 180_000, 180_000)  # llama-3.1-8b-instruct


def hold_of_one() -> int:
    prompt = chat_prompt_tokens(MESSAGES, "cl100k_base")
    return rating.max_charge_nano(prices=PRICES, prompt_tokens=prompt, max_tokens=MAX_TOKENS)


async def fire(base_url: str, secret: str, count: int) -> list[int | str]:
    """`count` chat requests at once; each one's HTTP status, or its error code when refused."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=120)

    async def one() -> int | str:
        try:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)
            return 200
        except openai.APIStatusError as exc:
            return exc.code or exc.status_code

    try:
        return list(await asyncio.gather(*(one() for _ in range(count))))
    finally:
        await client.close()


@pytest.mark.slow
def test_300_concurrent_requests_against_credit_for_50_never_overspend(live_url, secret, org_a, wallet, standin):
    # Every call costs exactly its hold (the server answers max_tokens tokens and counts the prompt as tiktoken
    # does), so the credit covers exactly 50 of them, whatever the interleaving.
    standin.reply_tokens, standin.delay, standin.behaviour = MAX_TOKENS, 0.05, "slow"
    each = hold_of_one()
    ledger.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=50 * each, idempotency_key="fifty", actor="t"
    )
    outcomes = asyncio.run(fire(f"{live_url}/v1", secret, 300))
    assert outcomes.count(200) == 50
    assert outcomes.count("insufficient_credit") == 250
    wait_for(lambda: UsageRecord.objects.count() == 50)
    assert UsageRecord.objects.aggregate(total=Sum("charge_nano"))["total"] == 50 * each
    assert balances(wallet) == (0, 0)
    assert reconciled(wallet) == []


@pytest.mark.slow
def test_a_key_spend_limit_holds_exactly_under_concurrency(live_url, funded, org_a, standin):
    standin.reply_tokens, standin.delay, standin.behaviour = MAX_TOKENS, 0.05, "slow"
    each = hold_of_one()
    # The key's limit is its hard budget, claimed in the statement that places each hold.
    key, secret = limited_key(organization_id=org_a.pk, amount_nano=20 * each, period="month")
    outcomes = asyncio.run(fire(f"{live_url}/v1", secret, 100))
    assert outcomes.count(200) == 20
    assert outcomes.count("key_spend_limit_reached") == 80
    wait_for(lambda: UsageRecord.objects.count() == 20)
    spend = BudgetSpend.objects.get(budget=key_limit(key))
    assert (spend.spent_nano, spend.held_nano) == (20 * each, 0)
    assert not BudgetSpendHold.objects.exists()
    assert balances(funded) == (usd("10") - 20 * each, 0)
    assert reconciled(funded) == []


@pytest.mark.slow
def test_500_concurrent_open_streams_are_served(live_url, secret, funded, standin):
    standin.behaviour = "hold"  # each stream sends its first token, then waits for the release
    count = 500

    async def scenario() -> list[str]:
        limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120) as http:
            body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": MAX_TOKENS}
            headers = {"Authorization": f"Bearer {secret}"}
            first_token = asyncio.Event()
            opened = 0

            async def one() -> str:
                nonlocal opened
                async with http.stream("POST", f"{live_url}/v1/chat/completions", json=body, headers=headers) as r:
                    assert r.status_code == 200
                    text = ""
                    async for line in r.aiter_lines():
                        text += line
                        if '"hello"' in line and not first_token.is_set():
                            opened += 1
                            if opened == count:
                                first_token.set()
                    return text

            tasks = [asyncio.create_task(one()) for _ in range(count)]
            await asyncio.wait_for(first_token.wait(), timeout=90)
            # Every stream has its first token while all of them are still open.
            assert standin.open_streams == count
            standin.release()
            return await asyncio.gather(*tasks)

    texts = asyncio.run(scenario())
    assert all(text.endswith("data: [DONE]") for text in texts)
    wait_for(lambda: UsageRecord.objects.count() == count, timeout=60)
    assert set(UsageRecord.objects.values_list("status", flat=True)) == {"ok"}
    assert balances(funded)[1] == 0
    assert reconciled(funded) == []
