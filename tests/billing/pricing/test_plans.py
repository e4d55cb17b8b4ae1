"""Plans: subscribe, renew with capped rollover, use-or-lose, past due, cancel, change with proration."""

import pytest
import time_machine
from django.db import transaction

from accounts.models import AuditEvent
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import Grant
from billing.pricing import rating, selectors, services
from billing.pricing.errors import PricingConflict
from billing.pricing.models import CounterKind, PeriodCounter, Subscription, SubscriptionPeriod
from billing.pricing.services import AllowanceSpec
from tests.billing.pricing.conftest import at, available, fund, usd

MARCH = at("2026-03-01 00:00")
APRIL = at("2026-04-01 00:00")


@pytest.fixture
def plans(book):
    services.plan_create(
        slug="starter",
        name="Starter",
        fee_nano=usd("31.00"),
        allowances=[AllowanceSpec(included_tokens=1_000, rollover_cap_tokens=500, model="gpt-4o")],
    )
    services.plan_create(
        slug="scale",
        name="Scale",
        fee_nano=usd("62.00"),
        usage_discount_bps=2_000,
        allowances=[AllowanceSpec(included_tokens=3_100, model="gpt-4o")],
    )


def _use(org, tokens: int, when) -> rating.Rating:
    with transaction.atomic():
        return services.usage_rate(organization_id=org.pk, usage=rating.Usage("gpt-4o", tokens), at=when)


def _quota(org, start) -> PeriodCounter:
    return PeriodCounter.objects.get(organization_id=org.pk, kind=CounterKind.QUOTA, period_start=start)


def test_subscribing_pays_the_fee_and_opens_the_quota(plans, org_a, staff):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter", actor=staff)
    assert (subscription.current_period_start, subscription.current_period_end) == (MARCH, APRIL)
    assert available(org_a) == usd("69.00")
    period = SubscriptionPeriod.objects.get(subscription=subscription)
    assert (period.kind, period.fee_nano, period.debit_transaction_id is not None) == ("start", usd("31.00"), True)
    assert _quota(org_a, MARCH).limit_tokens == 1_000
    assert AuditEvent.objects.filter(action="pricing.subscription.create", organization=org_a, actor=staff).exists()
    with pytest.raises(PricingConflict, match="already has a subscription"):
        services.subscription_create(organization_id=org_a.pk, plan_slug="scale", at=MARCH)


def test_subscribing_without_credit_writes_nothing(plans, org_a):
    with time_machine.travel(MARCH, tick=False), pytest.raises(InsufficientCredit):
        services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    assert not Subscription.objects.exists() and not PeriodCounter.objects.exists()


def test_renewal_rolls_over_unused_tokens_up_to_the_cap_and_expires_the_rest(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    assert _use(org_a, 300, at("2026-03-20 00:00")).quota_tokens == 300
    with time_machine.travel(APRIL, tick=False):
        assert services.subscriptions_renew() == {"renewed": 1}
        assert services.subscriptions_renew() == {}  # idempotent
    march, april = _quota(org_a, MARCH), _quota(org_a, APRIL)
    # 700 unused: 500 roll over (the cap), 200 are lost.
    assert (march.closed_at, march.expired_tokens) == (APRIL, 200)
    assert (april.limit_tokens, april.rollover_tokens) == (1_500, 500)
    assert available(org_a) == usd("38.00")
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (APRIL, at("2026-05-01 00:00"))
    # Usage that settles late against March gets nothing from the closed period: it is paid on demand.
    assert _use(org_a, 10, at("2026-03-31 23:59")).quota_tokens == 0
    assert _use(org_a, 1_600, at("2026-04-02 00:00")).quota_tokens == 1_500


def test_without_rollover_unused_tokens_are_lost(plans, org_a):
    fund(org_a, "200.00")
    with time_machine.travel(MARCH, tick=False):
        services.subscription_create(organization_id=org_a.pk, plan_slug="scale")
    with time_machine.travel(APRIL, tick=False):
        services.subscriptions_renew()
    assert _quota(org_a, MARCH).expired_tokens == 3_100
    assert _quota(org_a, APRIL).limit_tokens == 3_100


def test_an_unpaid_renewal_is_past_due_until_paid_or_invoiced(plans, org_a):
    fund(org_a, "31.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    with time_machine.travel(APRIL, tick=False):
        assert services.subscriptions_renew() == {"past_due": 1}
    subscription.refresh_from_db()
    assert subscription.status == "past_due"
    # No plan benefits while past due.
    assert selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o", at=APRIL).allowances == ()
    fund(org_a, "31.00")
    with time_machine.travel(at("2026-04-03 00:00"), tick=False):
        assert services.subscriptions_renew() == {"renewed": 1}
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_start) == ("active", APRIL)
    # Unpaid again in May: past due, and it no longer lapses (the close of the billing period puts the fee on the
    # invoice and renews the plan; tests/billing/invoicing/test_scenario.py).
    with time_machine.travel(at("2026-05-08 00:00"), tick=False):
        assert services.subscriptions_renew() == {"past_due": 1}
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_start) == ("past_due", APRIL)
    with time_machine.travel(at("2026-05-08 00:00"), tick=False):
        assert services.subscription_renew_invoiced(subscription_id=subscription.pk)
        assert services.subscription_renew_invoiced(subscription_id=subscription.pk) is False  # once
    subscription.refresh_from_db()
    period = subscription.periods.get(period_start=subscription.current_period_start)
    assert (subscription.status, period.fee_nano, period.debit_transaction_id) == ("active", usd("31.00"), None)
    assert period.invoiced_at == at("2026-05-08 00:00")
    assert available(org_a) == 0  # nothing taken from credit: the invoice collects it


def test_cancel_ends_at_period_end(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
        services.subscription_cancel(subscription_id=subscription.pk, reason="moving on")
    with time_machine.travel(APRIL, tick=False):
        assert services.subscriptions_renew() == {"ended": 1}
    subscription.refresh_from_db()
    assert (subscription.status, subscription.ended_at) == ("ended", APRIL)
    assert available(org_a) == usd("69.00")
    assert _quota(org_a, MARCH).closed_at == APRIL


def test_proration_is_computed_to_the_microsecond_and_rounded_down():
    p = services.proration_compute(
        old_fee_nano=usd("31.00"),
        new_fee_nano=usd("62.00"),
        period_start=MARCH,
        period_end=APRIL,
        at=at("2026-03-16 00:00"),
    )
    # 16 of March's 31 days remain: credit 31 x 16/31 = $16, charge 62 x 16/31 = $32.
    assert (p.credit_nano, p.charge_nano, p.net_nano) == (usd("16.00"), usd("32.00"), usd("16.00"))
    odd = services.proration_compute(
        old_fee_nano=100, new_fee_nano=0, period_start=MARCH, period_end=APRIL, at=at("2026-03-31 00:00")
    )
    assert odd.credit_nano == 100 // 31  # rounded down


def test_upgrade_mid_period_prorates_fee_and_included_tokens(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    _use(org_a, 400, at("2026-03-10 00:00"))
    with time_machine.travel(at("2026-03-16 00:00"), tick=False):
        change = services.subscription_change(subscription_id=subscription.pk, plan_slug="scale")
    assert (change.kind, change.fee_nano, change.credit_nano, change.plan_fee_nano) == (
        "change",
        usd("32.00"),
        usd("16.00"),
        usd("62.00"),
    )
    assert available(org_a) == usd("100.00") - usd("31.00") - usd("16.00")
    # 400 used stay used; the new plan's 3,100 a month x 16/31 = 1,600 for the rest of March.
    assert _quota(org_a, MARCH).limit_tokens == 2_000
    first = SubscriptionPeriod.objects.get(subscription=subscription, kind="start")
    assert first.superseded_at == at("2026-03-16 00:00")
    ctx = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o", at=at("2026-03-17 00:00"))
    assert ctx.plan_discount_bps == 2_000
    assert _use(org_a, 2_000, at("2026-03-17 00:00")).quota_tokens == 1_600
    # The renewal charges the new plan in full.
    fund(org_a, "100.00")
    with time_machine.travel(APRIL, tick=False):
        services.subscriptions_renew()
    assert SubscriptionPeriod.objects.get(subscription=subscription, kind="renewal").fee_nano == usd("62.00")


def test_downgrade_returns_the_difference_as_credit(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="scale")
    with time_machine.travel(at("2026-03-16 00:00"), tick=False):
        change = services.subscription_change(subscription_id=subscription.pk, plan_slug="starter")
    # credit 62 x 16/31 = $32, charge 31 x 16/31 = $16: $16 back.
    assert (change.fee_nano, change.credit_nano) == (usd("16.00"), usd("32.00"))
    grant = Grant.objects.get(pk=change.credit_grant_id)
    assert (grant.kind, grant.amount_nano) == ("refund", usd("16.00"))
    assert available(org_a) == usd("100.00") - usd("62.00") + usd("16.00")
    with pytest.raises(PricingConflict, match="already on the plan"):
        services.subscription_change(subscription_id=subscription.pk, plan_slug="starter", at=at("2026-03-17 00:00"))


def test_included_credit_is_a_plan_allowance_grant_that_expires_with_the_period(book, org_a):
    services.plan_create(slug="credit", name="Credit plan", fee_nano=usd("10.00"), included_credit_nano=usd("5.00"))
    fund(org_a, "10.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="credit")
    grant = Grant.objects.get(kind="plan_allowance")
    assert (grant.amount_nano, grant.expires_at, grant.source_ref) == (
        usd("5.00"),
        APRIL,
        f"subscription:{subscription.pk}",
    )
    assert available(org_a) == usd("5.00")


def test_a_plan_with_subscribers_keeps_its_money_terms(plans, org_a, staff):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    with pytest.raises(PricingConflict, match="has subscribers"):
        services.plan_update(plan_slug="starter", fee_nano=usd("1.00"), actor=staff)
    with pytest.raises(PricingConflict, match="has subscribers"):
        services.plan_update(plan_slug="starter", allowances=[], actor=staff)
    plan = services.plan_update(plan_slug="starter", name="Starter (legacy)", is_active=False, actor=staff)
    assert (plan.name, plan.is_active) == ("Starter (legacy)", False)


def test_a_change_after_using_rollover_credits_the_unused_share_of_the_included_tokens(plans, org_a):
    services.plan_create(slug="free", name="Free", fee_nano=0)
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    _use(org_a, 300, at("2026-03-20 00:00"))
    with time_machine.travel(APRIL, tick=False):
        services.subscriptions_renew()
    assert (_quota(org_a, APRIL).limit_tokens, _quota(org_a, APRIL).rollover_tokens) == (1_500, 500)
    assert available(org_a) == usd("38.00")
    # 800 used: the 500 rolled over first, then 300 of April's 1,000 included tokens; 700 of those are unused.
    assert _use(org_a, 800, at("2026-04-02 00:00")).quota_tokens == 800
    with time_machine.travel(at("2026-04-02 00:00"), tick=False):
        change = services.subscription_change(subscription_id=subscription.pk, plan_slug="free")
    # The calendar says 29/30 of $31 ($29.97); 70% of the included tokens unused caps it at $21.70.
    assert (change.fee_nano, change.credit_nano) == (0, usd("21.70"))
    assert Grant.objects.get(pk=change.credit_grant_id).amount_nano == usd("21.70")
    assert available(org_a) == usd("38.00") + usd("21.70")


def test_changing_from_monthly_to_annual_starts_a_new_year_long_period_at_the_change(plans, org_a):
    services.plan_create(
        slug="annual",
        name="Annual",
        fee_nano=usd("300.00"),
        interval="year",
        allowances=[AllowanceSpec(included_tokens=12_000, model="gpt-4o")],
    )
    fund(org_a, "500.00")
    with time_machine.travel(MARCH, tick=False):
        subscription = services.subscription_create(organization_id=org_a.pk, plan_slug="starter")
    _use(org_a, 400, at("2026-03-10 00:00"))
    mid = at("2026-03-16 00:00")
    with time_machine.travel(mid, tick=False):
        change = services.subscription_change(subscription_id=subscription.pk, plan_slug="annual")
    # Credit 31 x 16/31 = $16 for the monthly plan (60% of its tokens unused caps it at $18.60, not binding);
    # the whole annual fee is charged, as a new period begins now.
    assert (change.kind, change.period_start, change.period_end) == ("change", mid, at("2027-03-16 00:00"))
    assert (change.fee_nano, change.credit_nano, change.plan_fee_nano) == (usd("300.00"), usd("16.00"), usd("300.00"))
    assert available(org_a) == usd("500.00") - usd("31.00") - usd("284.00")
    subscription.refresh_from_db()
    assert (subscription.billing_anchor, subscription.current_period_start, subscription.current_period_end) == (
        mid,
        mid,
        at("2027-03-16 00:00"),
    )
    # The monthly quota closes at the change (its unused tokens are lost); the annual one runs for the year.
    march = _quota(org_a, MARCH)
    assert (march.closed_at, march.expired_tokens) == (mid, 600)
    annual = _quota(org_a, mid)
    assert (annual.period_end, annual.limit_tokens, annual.used_tokens) == (at("2027-03-16 00:00"), 12_000, 0)
    assert _use(org_a, 500, at("2026-03-20 00:00")).quota_tokens == 500
