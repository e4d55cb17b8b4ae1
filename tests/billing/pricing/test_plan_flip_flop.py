"""Switching plans back and forth within a period never adds to what the organization can spend: what a change
credits back is at most the unused share of what was paid, counting the included tokens and credit already used."""

import time_machine
from django.db import transaction

from billing.ledger import services as ledger
from billing.pricing import rating, services
from billing.pricing.models import CounterKind, PeriodCounter
from billing.pricing.services import AllowanceSpec
from tests.billing.pricing.conftest import at, available, fund, usd

APRIL = at("2026-04-01 00:00")  # a 30-day period: one day is 1/30 of the fee


def _remaining_tokens(org) -> int:
    row = PeriodCounter.objects.get(organization_id=org.pk, kind=CounterKind.QUOTA, period_start=APRIL)
    return row.limit_tokens - row.used_tokens


def _change(subscription, plan: str, when: str) -> None:
    with time_machine.travel(at(when), tick=False):
        services.subscription_change(subscription_id=subscription.pk, plan_slug=plan)


def test_switching_away_and_back_does_not_refill_used_included_tokens(book, org_a):
    # $30 for 3,000 tokens: a token of the plan is worth one cent.
    services.plan_create(
        slug="pro", name="Pro", fee_nano=usd("30.00"), allowances=[AllowanceSpec(included_tokens=3_000, model="gpt-4o")]
    )
    services.plan_create(slug="free", name="Free", fee_nano=0)
    fund(org_a, "100.00")

    def worth() -> int:
        return available(org_a) + _remaining_tokens(org_a) * usd("0.01")

    with time_machine.travel(APRIL, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="pro")
    with transaction.atomic():
        used = services.usage_rate(
            organization_id=org_a.pk, usage=rating.Usage("gpt-4o", 2_700), at=at("2026-04-02 00:00")
        )
    assert used.quota_tokens == 2_700
    before = worth()
    assert before == usd("73.00")
    _change(subscription, "free", "2026-04-02 00:00")
    # 90% of the included tokens are used: 10% of the $30 comes back, not the 29/30 of it the calendar says.
    assert available(org_a) == usd("73.00")
    assert worth() <= before
    for day in range(3, 9):
        _change(subscription, "pro" if day % 2 else "free", f"2026-04-0{day} 00:00")
        assert worth() <= before, f"day {day}"


def test_switching_away_and_back_does_not_refill_used_included_credit(book, org_a):
    services.plan_create(slug="credit", name="Credit", fee_nano=usd("10.00"), included_credit_nano=usd("10.00"))
    services.plan_create(slug="free", name="Free", fee_nano=0)
    fund(org_a, "100.00")
    with time_machine.travel(APRIL, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="credit")
    assert available(org_a) == usd("100.00")
    with time_machine.travel(at("2026-04-02 00:00"), tick=False):
        ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("9.00"), idempotency_key="spend", actor="test")
    before = available(org_a)
    assert before == usd("91.00")
    for day in range(2, 9):
        _change(subscription, "free" if day % 2 == 0 else "credit", f"2026-04-0{day} 00:00")
        assert available(org_a) <= before, f"day {day}"


def test_downgrading_after_using_the_bigger_plan_credits_only_what_is_unused(book, org_a):
    services.plan_create(
        slug="small",
        name="Small",
        fee_nano=usd("10.00"),
        allowances=[AllowanceSpec(included_tokens=1_000, model="gpt-4o")],
    )
    services.plan_create(
        slug="big", name="Big", fee_nano=usd("30.00"), allowances=[AllowanceSpec(included_tokens=3_000, model="gpt-4o")]
    )
    fund(org_a, "100.00")
    with time_machine.travel(APRIL, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="small")
    # Upgrade on day 2, nothing used yet: the calendar's 29/30 of $10 back, 29/30 of $30 charged, 2,900 tokens.
    _change(subscription, "big", "2026-04-02 00:00")
    assert available(org_a) == usd("100.00") - usd("10.00") - usd("29.00") + (usd("10.00") * 29 // 30)
    assert _remaining_tokens(org_a) == 2_900
    with transaction.atomic():
        services.usage_rate(organization_id=org_a.pk, usage=rating.Usage("gpt-4o", 2_900), at=at("2026-04-02 12:00"))
    paid_so_far = available(org_a)
    # Downgrade on day 3 with all of the bigger plan's tokens used: nothing of its fee comes back, and the
    # smaller plan's 28/30 is charged for its 28/30 of 1,000 tokens.
    _change(subscription, "small", "2026-04-03 00:00")
    assert available(org_a) == paid_so_far - usd("10.00") * 28 // 30
    assert _remaining_tokens(org_a) == 933
