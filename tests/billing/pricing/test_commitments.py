"""Reserved commitments: offers, purchase (upfront and monthly), drawdown, use-or-lose, reserved throughput."""

from fractions import Fraction

import pytest
import time_machine
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.ledger.errors import InsufficientCredit
from billing.pricing import rating, selectors, services
from billing.pricing.models import ChargeStatus, Commitment, CommitmentCharge, CounterKind, PeriodCounter
from tests.billing.pricing.conftest import at, available, fund, monthly_offer, usd

START = at("2026-01-31 12:00")


def test_monthly_fee_is_the_committed_tokens_at_the_discounted_blended_price():
    # 10M tokens x $0.88/M x 75 % = $6.60
    fee = services.commitment_monthly_fee_nano(
        monthly_tokens=10_000_000, blended_price_micro_per_mtok=880_000, discount_bps=2_500
    )
    assert fee == usd("6.60")
    # Rounded up to the nano-unit.
    assert services.commitment_monthly_fee_nano(monthly_tokens=1, blended_price_micro_per_mtok=1, discount_bps=0) == 1


@settings(max_examples=300, deadline=None)
@given(tokens=st.integers(1, 10**14), price=st.integers(1, 10**12), discount=st.integers(0, 9_999))
def test_monthly_fee_is_rounded_up_once_from_the_exact_amount(tokens, price, discount):
    exact = Fraction(tokens * price * (10_000 - discount), 1000 * 10_000)
    fee = services.commitment_monthly_fee_nano(
        monthly_tokens=tokens, blended_price_micro_per_mtok=price, discount_bps=discount
    )
    assert 0 <= fee - exact < 1


def test_upfront_purchase_pays_the_whole_term(book, org_a):
    fund(org_a, "50.00")
    offer = monthly_offer(payment="upfront")
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk)
    assert (commitment.monthly_fee_nano, commitment.total_fee_nano) == (usd("6.60"), usd("19.80"))
    assert commitment.ends_at == at("2026-04-30 12:00")
    assert available(org_a) == usd("30.20")
    charge = CommitmentCharge.objects.get(commitment=commitment)
    assert (charge.amount_nano, charge.status, charge.period_end) == (usd("19.80"), "paid", commitment.ends_at)
    # Terms are copied: changing the offer does not change the purchase.
    services.commitment_offer_update(offer_id=offer.pk, discount_bps=5_000)
    commitment.refresh_from_db()
    assert commitment.discount_bps == 2_500


def test_purchase_without_credit_writes_nothing(book, org_a):
    offer = monthly_offer()
    with time_machine.travel(START, tick=False), pytest.raises(InsufficientCredit):
        services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk)
    assert not Commitment.objects.exists() and not PeriodCounter.objects.exists()


def test_monthly_payments_months_drawdown_and_use_or_lose(book, org_a, settings):
    settings.PRICING_PERIOD_CLOSE_GRACE_SECONDS = 900
    fund(org_a, "10.00")
    offer = monthly_offer()
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk)
    assert available(org_a) == usd("3.40")
    usage = rating.Usage("llama-3.1-70b-instruct", input_tokens=6_000_000, output_tokens=0)
    with transaction.atomic():
        first = services.usage_rate(organization_id=org_a.pk, usage=usage, at=at("2026-02-10 00:00"))
        second = services.usage_rate(organization_id=org_a.pk, usage=usage, at=at("2026-02-20 00:00"))
    assert first.commitment_tokens == 6_000_000 and first.credit_nano == 0
    # Beyond the commitment: 2M tokens on demand at $0.88/M = $1.76.
    assert (second.commitment_tokens, second.credit_nano) == (4_000_000, usd("1.76"))
    # The second month (anchored on Jan 31: it starts on Feb 28) is billed by the task; credit is short, so
    # the payment is due, and the month's tokens are available anyway: the organization owes them.
    with time_machine.travel(at("2026-02-28 12:00"), tick=False):
        assert services.commitments_bill() == {"due": 1}
    with time_machine.travel(at("2026-02-28 12:15"), tick=False):  # the period closes after the grace
        services.periods_close()
    charge = CommitmentCharge.objects.get(commitment=commitment, month_index=1)
    assert (charge.status, charge.amount_nano, charge.period_start) == ("due", usd("6.60"), at("2026-02-28 12:00"))
    ctx = selectors.pricing_context_get(
        organization_id=org_a.pk, model_slug="llama-3.1-70b-instruct", at=at("2026-03-01 00:00")
    )
    assert [(a.period_start, a.limit_tokens) for a in ctx.allowances] == [(at("2026-02-28 12:00"), 10_000_000)]
    # The first month is closed: fully used, nothing expired.
    january = PeriodCounter.objects.get(kind=CounterKind.COMMITMENT, period_start=START)
    assert (january.closed_at is not None, january.expired_tokens) == (True, 0)
    # Credit arrives; the next run collects what is due.
    fund(org_a, "10.00")
    with time_machine.travel(at("2026-03-05 00:00"), tick=False):
        assert services.commitments_bill() == {"billed": 1}
    charge.refresh_from_db()
    assert (charge.status, charge.attempts) == (ChargeStatus.PAID, 2)
    # The second month goes unused: after it ends (and the grace), all 10M tokens expire. Use-or-lose.
    with time_machine.travel(at("2026-03-31 12:20"), tick=False):
        services.commitments_bill()
        services.periods_close()
    february = PeriodCounter.objects.get(kind=CounterKind.COMMITMENT, period_start=at("2026-02-28 12:00"))
    assert (february.used_tokens, february.expired_tokens) == (0, 10_000_000)
    # After the term, the commitment ends and no longer covers usage.
    with time_machine.travel(at("2026-04-30 12:00"), tick=False):
        services.commitments_bill()
    commitment.refresh_from_db()
    assert commitment.status == "ended"
    later = selectors.pricing_context_get(
        organization_id=org_a.pk, model_slug="llama-3.1-70b-instruct", at=at("2026-05-01 00:00")
    )
    assert later.allowances == ()


def test_reserved_throughput_reaches_the_rate_limiter_and_covers_a_months_capacity(book, org_a):
    fund(org_a, "10000.00")
    offer = monthly_offer(
        name="Llama group, 50k tokens/min",
        model=None,
        group="open-weight",
        committed_tokens_per_month=None,
        reserved_tokens_per_minute=50_000,
        term_months=1,
        payment="upfront",
        blended_price_micro_per_mtok=500_000,
    )
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=offer.pk)
    # 50,000 tokens a minute x 43,200 minutes = 2.16B tokens a month, at $0.50/M less 25 % = $810.
    assert commitment.monthly_tokens == 2_160_000_000
    assert commitment.total_fee_nano == usd("810.00")
    for slug in ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct"):
        ctx = selectors.pricing_context_get(organization_id=org_a.pk, model_slug=slug, at=at("2026-02-01 00:00"))
        assert ctx.reserved_tokens_per_minute == 50_000
    gpt = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o", at=at("2026-02-01 00:00"))
    assert gpt.reserved_tokens_per_minute == 0


def test_offer_validation(book):
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError, match="1, 3 or 12"):
        monthly_offer(term_months=6)
    with pytest.raises(ApplicationError, match="either committed"):
        monthly_offer(reserved_tokens_per_minute=10)
    with pytest.raises(ApplicationError, match="discount_bps"):
        monthly_offer(discount_bps=10_000)
    with pytest.raises(ApplicationError, match="exactly one of model and group"):
        monthly_offer(group="open-weight")
