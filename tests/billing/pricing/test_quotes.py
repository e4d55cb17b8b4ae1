"""Self-service quotes: the preview of a plan change or commitment is what accepting it charges, and a quote made
stale by anything that would change the charge is refused with nothing written."""

import threading
from dataclasses import replace

import pytest
import time_machine
from django.db import close_old_connections, transaction

from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import JournalTransaction
from billing.pricing import rating, selectors, services
from billing.pricing.errors import PricingConflict, PricingNotFound, StaleConfirmation
from billing.pricing.models import Commitment, CommitmentCharge, Subscription, SubscriptionPeriod
from billing.pricing.services import AllowanceSpec
from tests.billing.pricing.conftest import at, available, fund, monthly_offer, usd

MARCH = at("2026-03-01 00:00")
MID = at("2026-03-16 00:00")


@pytest.fixture
def plans(book):
    services.plan_create(
        slug="starter",
        name="Starter",
        fee_nano=usd("31.00"),
        allowances=[AllowanceSpec(included_tokens=1_000, rollover_cap_tokens=500, model="gpt-4o")],
    )
    services.plan_create(slug="scale", name="Scale", fee_nano=usd("62.00"), usage_discount_bps=2_000)
    services.plan_create(slug="annual", name="Annual", fee_nano=usd("600.00"), interval="year")
    services.plan_create(slug="retired", name="Retired", fee_nano=usd("1.00"), is_active=False)


def _subscribe(org, slug="starter"):
    with time_machine.travel(MARCH, tick=False):
        return services.plan_quote_accept(quote=services.plan_quote(organization_id=org.pk, plan_slug=slug))


def test_subscribing_charges_the_quoted_fee(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="starter")
        assert (quote.is_change, quote.charge_nano, quote.net_nano, quote.period_end) == (
            False,
            usd("31.00"),
            usd("31.00"),
            at("2026-04-01 00:00"),
        )
        assert available(org_a) == usd("100.00")  # a quote writes nothing
        period = services.plan_quote_accept(quote=quote)
    assert (period.kind, period.fee_nano) == ("start", quote.charge_nano)
    assert available(org_a) == usd("100.00") - quote.net_nano


def test_upgrade_charges_exactly_the_previewed_proration(plans, org_a):
    fund(org_a, "100.00")
    _subscribe(org_a)
    with time_machine.travel(at("2026-03-16 07:13:02.123456"), tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
    before = available(org_a)
    # Confirmed four minutes later: the change takes effect at the quoted moment, so the amounts are the same.
    with time_machine.travel(at("2026-03-16 07:17:00"), tick=False):
        change = services.plan_quote_accept(quote=quote)
    assert (change.fee_nano, change.credit_nano, change.starts_at) == (quote.charge_nano, quote.credit_nano, quote.at)
    assert quote.net_nano > 0
    assert before - available(org_a) == quote.net_nano
    debit = JournalTransaction.objects.get(pk=change.debit_transaction_id)
    assert debit.entries.filter(amount_nano__gt=0).values_list("amount_nano", flat=True).get() == quote.net_nano


def test_downgrade_grants_back_the_previewed_difference(plans, org_a):
    fund(org_a, "100.00")
    _subscribe(org_a, "scale")
    with time_machine.travel(MID, tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="starter")
        change = services.plan_quote_accept(quote=quote)
    assert quote.net_nano == -usd("16.00")
    assert available(org_a) == usd("100.00") - usd("62.00") + usd("16.00")
    assert change.credit_grant_id is not None


def test_a_quote_is_stale_after_the_plan_changed(plans, org_a):
    fund(org_a, "200.00")
    subscription = _subscribe(org_a).subscription
    with time_machine.travel(MID, tick=False):
        to_scale = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
        to_annual = services.plan_quote(organization_id=org_a.pk, plan_slug="annual")
        services.plan_quote_accept(quote=to_scale)
        left = available(org_a)
        with pytest.raises(StaleConfirmation, match="Your plan changed since this preview"):
            services.plan_quote_accept(quote=to_annual)
        # Changing back does not revive the first preview: it replaced another plan record.
        back = services.subscription_change(subscription_id=subscription.pk, plan_slug="starter")
        with pytest.raises(StaleConfirmation, match="Your plan changed since this preview"):
            services.plan_quote_accept(quote=to_scale)
    assert Subscription.objects.get(pk=subscription.pk).plan.slug == "starter"
    assert SubscriptionPeriod.objects.filter(subscription=subscription).count() == 3
    # Only the change back moved money after the refused confirmations.
    assert available(org_a) == left - (back.fee_nano - back.credit_nano)


def test_a_subscribe_quote_is_stale_once_subscribed(plans, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(MARCH, tick=False):
        first = services.plan_quote(organization_id=org_a.pk, plan_slug="starter")
        second = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
        services.plan_quote_accept(quote=first)
        with pytest.raises(StaleConfirmation, match="Your plan changed"):
            services.plan_quote_accept(quote=second)
    assert available(org_a) == usd("69.00")


def test_a_quote_is_stale_when_included_tokens_were_used_meanwhile(plans, org_a):
    fund(org_a, "100.00")
    _subscribe(org_a)
    with time_machine.travel(MID, tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
        with transaction.atomic():
            services.usage_rate(organization_id=org_a.pk, usage=rating.Usage("gpt-4o", 900), at=MID)
        left = available(org_a)
        with pytest.raises(StaleConfirmation, match="price of this change moved"):
            services.plan_quote_accept(quote=quote)
        assert available(org_a) == left
        # A fresh preview has the smaller credit, and is what is charged.
        fresh = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
        assert fresh.credit_nano < quote.credit_nano
        services.plan_quote_accept(quote=fresh)
    assert left - available(org_a) == fresh.net_nano


def test_an_old_or_altered_quote_is_refused(plans, org_a):
    fund(org_a, "100.00")
    _subscribe(org_a)
    with time_machine.travel(MID, tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
    late = MID + services.QUOTE_MAX_AGE + services.QUOTE_MAX_AGE / 10
    with time_machine.travel(late, tick=False), pytest.raises(StaleConfirmation, match="more than 15 minutes old"):
        services.plan_quote_accept(quote=quote)
    with time_machine.travel(MID, tick=False), pytest.raises(StaleConfirmation, match="price of this change moved"):
        services.plan_quote_accept(quote=replace(quote, charge_nano=1))
    assert available(org_a) == usd("69.00")


def test_quotes_refuse_unknown_retired_and_same_plans(plans, org_a):
    with pytest.raises(PricingNotFound):
        services.plan_quote(organization_id=org_a.pk, plan_slug="nope")
    with pytest.raises(PricingConflict, match="no longer offered"):
        services.plan_quote(organization_id=org_a.pk, plan_slug="retired")
    fund(org_a, "100.00")
    _subscribe(org_a)
    with time_machine.travel(MID, tick=False), pytest.raises(PricingConflict, match="already on the plan"):
        services.plan_quote(organization_id=org_a.pk, plan_slug="starter")


def test_short_credit_writes_nothing(plans, org_a):
    fund(org_a, "40.00")
    _subscribe(org_a)
    with time_machine.travel(MID, tick=False):
        quote = services.plan_quote(organization_id=org_a.pk, plan_slug="annual")
        with pytest.raises(InsufficientCredit):
            services.plan_quote_accept(quote=quote)
    assert SubscriptionPeriod.objects.count() == 1
    assert available(org_a) == usd("9.00")


def test_plan_state_shows_quota_left_rollover_and_renewal(plans, org_a):
    fund(org_a, "100.00")
    _subscribe(org_a)
    with transaction.atomic():
        services.usage_rate(organization_id=org_a.pk, usage=rating.Usage("gpt-4o", 300), at=MID)
    state = selectors.plan_state(organization_id=org_a.pk, now=MID)
    assert state.subscription is not None and state.subscription.plan.slug == "starter"
    assert [(q.scope_label, q.left_tokens, q.rollover_tokens) for q in state.quotas] == [("model gpt-4o", 700, 0)]
    assert state.renews and state.current_period is not None


# --- commitments ------------------------------------------------------------------------------------------------


def test_commitment_quote_is_what_the_purchase_charges(book, org_a):
    fund(org_a, "50.00")
    offer = monthly_offer(payment="upfront")
    quote = services.commitment_quote(offer_id=offer.pk)
    assert (quote.monthly_fee_nano, quote.total_fee_nano, quote.first_payment_nano) == (
        usd("6.60"),
        usd("19.80"),
        usd("19.80"),
    )
    assert quote.list_monthly_nano == usd("8.80")
    purchase = services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k1")
    assert purchase.created and purchase.commitment.total_fee_nano == quote.total_fee_nano
    assert available(org_a) == usd("50.00") - quote.first_payment_nano
    state = selectors.plan_state(organization_id=org_a.pk, now=purchase.commitment.starts_at)
    assert [(d.limit_tokens, d.used_tokens) for d in state.commitments] == [(10_000_000, 0)]


def test_commitment_double_submit_buys_once(book, org_a):
    fund(org_a, "50.00")
    quote = services.commitment_quote(offer_id=monthly_offer().pk)
    first = services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k2")
    again = services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k2")
    assert (first.created, again.created, again.commitment.pk) == (True, False, first.commitment.pk)
    assert CommitmentCharge.objects.count() == 1
    assert available(org_a) == usd("50.00") - usd("6.60")


@pytest.mark.django_db(transaction=True)
def test_commitment_double_submit_at_once_buys_once(org_a):
    services.price_book_seed()
    fund(org_a, "50.00")
    quote = services.commitment_quote(offer_id=monthly_offer().pk)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def submit() -> None:
        try:
            barrier.wait()
            results.append(
                services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k3").created
            )
        finally:
            close_old_connections()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]  # type: ignore[type-var]
    assert Commitment.objects.count() == 1
    assert available(org_a) == usd("50.00") - usd("6.60")


def test_commitment_quote_is_stale_after_the_offer_changed(book, org_a):
    fund(org_a, "50.00")
    offer = monthly_offer()
    quote = services.commitment_quote(offer_id=offer.pk)
    services.commitment_offer_update(offer_id=offer.pk, discount_bps=1_000)
    with pytest.raises(StaleConfirmation, match="terms changed"):
        services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k4")
    services.commitment_offer_update(offer_id=offer.pk, discount_bps=2_500, is_active=False)
    with pytest.raises(PricingConflict, match="no longer offered"):
        services.commitment_quote_accept(organization_id=org_a.pk, quote=quote, idempotency_key="k4")
    assert not Commitment.objects.exists()
    assert available(org_a) == usd("50.00")


@pytest.mark.django_db(transaction=True)
def test_one_plan_quote_confirmed_twice_at_once_charges_once(org_a):
    services.price_book_seed()
    services.plan_create(slug="starter", name="Starter", fee_nano=usd("31.00"))
    services.plan_create(slug="scale", name="Scale", fee_nano=usd("62.00"))
    fund(org_a, "100.00")
    services.plan_quote_accept(quote=services.plan_quote(organization_id=org_a.pk, plan_slug="starter"))
    quote = services.plan_quote(organization_id=org_a.pk, plan_slug="scale")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def confirm() -> None:
        try:
            barrier.wait()
            services.plan_quote_accept(quote=quote)
            outcomes.append("changed")
        except StaleConfirmation:
            outcomes.append("stale")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["changed", "stale"]
    assert SubscriptionPeriod.objects.filter(kind="change").count() == 1
    assert available(org_a) == usd("100.00") - usd("31.00") - quote.net_nano
