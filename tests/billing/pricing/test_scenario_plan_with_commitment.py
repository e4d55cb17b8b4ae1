"""Scenario: an organization billed through four months under a plan with a reserved commitment.

In the manner of Lago's spec/scenarios: the clock moves month by month, the beat tasks run as they would,
usage is rated and charged as the gateway settles it (rating, then the debit, in one transaction), and every
line, fee and balance is checked against figures worked out by hand.

- Plan "builder": $20.00 a month, 2M gpt-4o-mini tokens included (up to 1M roll over), 10 % off usage beyond.
- Commitment: 10M open-weight tokens a month for 3 months at $0.50/M blended less 20 % = $4.00 a month.
- gpt-4o-mini: $0.15/M input until March 15, then $0.10/M. llama 8B: $0.18/M.
"""

import itertools

import pytest
import time_machine
from django.db import transaction

from billing.ledger import services as ledger
from billing.pricing import rating, selectors, services
from billing.pricing.models import (
    CommitmentCharge,
    CounterKind,
    PeriodCounter,
    SubscriptionPeriod,
)
from billing.pricing.services import AllowanceSpec
from billing.usage.models import UsageRecord
from tests.billing.pricing.conftest import at, available, fund, usd

pytestmark = pytest.mark.slow
_requests = itertools.count()


def bill(org, model: str, input_tokens: int, when) -> list[tuple[str, str, int, int]]:
    """Rate and charge one request the way the gateway settles it; returns its lines (kind, source, tokens, nano)."""
    with time_machine.travel(when, tick=False), transaction.atomic():
        rated = services.usage_rate(organization_id=org.pk, usage=rating.Usage(model, input_tokens), at=when)
        request_id = f"scenario-{next(_requests)}"
        if rated.credit_nano:
            ledger.wallet_debit(
                organization_id=org.pk, amount_nano=rated.credit_nano, idempotency_key=request_id, actor="gateway"
            )
        UsageRecord.objects.create(
            organization=org,
            request_id=request_id,
            endpoint="chat",
            model=selectors.price_version_at(model_slug=model, at=when).model,
            status="ok",
            input_tokens=input_tokens,
            price_version_id=rated.price_version_id,
            charge_nano=rated.credit_nano,
            quota_tokens=rated.quota_tokens,
            commitment_tokens=rated.commitment_tokens,
            lines=[line.as_dict() for line in rated.lines],
        )
    return [(line.kind, line.source, line.tokens, line.amount_nano) for line in rated.lines]


def month_start(when) -> None:
    """What beat does around a month boundary: renew, bill commitments, and (after the grace) close periods."""
    with time_machine.travel(when, tick=False):
        services.subscriptions_renew()
        services.commitments_bill()
    with time_machine.travel(at(when.strftime("%Y-%m-%d %H:%M")).replace(minute=20), tick=False):
        services.periods_close()


def quota(org, start) -> PeriodCounter:
    return PeriodCounter.objects.get(organization=org, kind=CounterKind.QUOTA, period_start=at(start))


def test_four_months_under_a_plan_with_a_commitment(book, org_a, staff):
    jan, feb, mar, apr = (at(f"2026-0{m}-01 00:00") for m in (1, 2, 3, 4))
    with time_machine.travel(jan, tick=False):
        fund(org_a, "200.00")
        services.plan_create(
            slug="builder",
            name="Builder",
            fee_nano=usd("20.00"),
            usage_discount_bps=1_000,
            allowances=[AllowanceSpec(included_tokens=2_000_000, rollover_cap_tokens=1_000_000, model="gpt-4o-mini")],
            actor=staff,
        )
        offer = services.commitment_offer_create(
            name="Open weights 10M",
            group="open-weight",
            committed_tokens_per_month=10_000_000,
            term_months=3,
            discount_bps=2_000,
            payment="monthly",
            blended_price_micro_per_mtok=500_000,
            actor=staff,
        )
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="builder", actor=staff)
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk, actor=staff)
        services.price_version_create(
            model_slug="gpt-4o-mini",
            input_price_micro_per_mtok=100_000,
            output_price_micro_per_mtok=400_000,
            effective_from=at("2026-03-15 00:00"),
            actor=staff,
        )
    assert available(org_a) == usd("176.00")  # $20 plan + $4 commitment

    # --- January ----------------------------------------------------------------------------------------------
    assert bill(org_a, "gpt-4o-mini", 1_500_000, at("2026-01-05 10:00")) == [("input", "quota", 1_500_000, 0)]
    assert bill(org_a, "llama-3.1-70b-instruct", 8_000_000, at("2026-01-12 10:00")) == [
        ("input", "commitment", 8_000_000, 0)
    ]
    # 2M left in the commitment; 1M on demand at $0.18/M less the plan's 10 % = $0.162.
    assert bill(org_a, "llama-3.1-8b-instruct", 3_000_000, at("2026-01-20 10:00")) == [
        ("input", "commitment", 2_000_000, 0),
        ("input", "credit", 1_000_000, usd("0.162")),
    ]

    # --- February: renewal, 500k tokens roll over (under the 1M cap), second commitment month billed ---------
    month_start(feb)
    january = quota(org_a, "2026-01-01 00:00")
    assert (january.used_tokens, january.expired_tokens) == (1_500_000, 0)
    assert (quota(org_a, "2026-02-01 00:00").limit_tokens, quota(org_a, "2026-02-01 00:00").rollover_tokens) == (
        2_500_000,
        500_000,
    )
    assert available(org_a) == usd("176.00") - usd("0.162") - usd("24.00")
    # 2.5M from quota; 0.5M at $0.15/M less 10 % = $0.0675.
    assert bill(org_a, "gpt-4o-mini", 3_000_000, at("2026-02-10 10:00")) == [
        ("input", "quota", 2_500_000, 0),
        ("input", "credit", 500_000, usd("0.0675")),
    ]
    # No open-weight usage in February: the commitment month goes unused.

    # --- March: nothing rolls over; February's commitment expires unused (use-or-lose) -----------------------
    month_start(mar)
    assert quota(org_a, "2026-03-01 00:00").limit_tokens == 2_000_000
    february_commitment = PeriodCounter.objects.get(
        organization=org_a, kind=CounterKind.COMMITMENT, period_start=at("2026-02-01 00:00")
    )
    assert (february_commitment.used_tokens, february_commitment.expired_tokens) == (0, 10_000_000)
    # The new gpt-4o-mini price from March 15: 2M from quota, 2M at $0.10/M less 10 % = $0.18, at the new version.
    lines = bill(org_a, "gpt-4o-mini", 4_000_000, at("2026-03-20 10:00"))
    assert lines == [("input", "quota", 2_000_000, 0), ("input", "credit", 2_000_000, usd("0.18"))]
    march_record = UsageRecord.objects.get(created_at__isnull=False, input_tokens=4_000_000)
    assert march_record.price_version == selectors.price_version_at(model_slug="gpt-4o-mini", at=at("2026-03-20 00:00"))
    assert march_record.price_version.input_price_micro_per_mtok == 100_000

    # --- April: the commitment's term is over; the plan renews a fourth time ---------------------------------
    month_start(apr)
    commitment.refresh_from_db()
    assert commitment.status == "ended"
    assert [
        (c.month_index, c.amount_nano, c.status) for c in CommitmentCharge.objects.filter(commitment=commitment)
    ] == [(0, usd("4.00"), "paid"), (1, usd("4.00"), "paid"), (2, usd("4.00"), "paid")]
    assert [
        (p.kind, p.period_start, p.fee_nano) for p in SubscriptionPeriod.objects.filter(subscription=subscription)
    ] == [
        ("start", jan, usd("20.00")),
        ("renewal", feb, usd("20.00")),
        ("renewal", mar, usd("20.00")),
        ("renewal", apr, usd("20.00")),
    ]
    # $200 - 4 x $20 - 3 x $4 - usage ($0.162 + $0.0675 + $0.18)
    assert available(org_a) == usd("107.5905")
    assert sum(UsageRecord.objects.values_list("charge_nano", flat=True)) == usd("0.4095")
    assert (
        selectors.pricing_context_get(organization_id=org_a.pk, model_slug="llama-3.1-8b-instruct", at=apr).allowances
        == ()
    )
