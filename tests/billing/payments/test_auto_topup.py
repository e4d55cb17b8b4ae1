"""Auto top-up against localstripe: the trigger after a debit, one charge in flight, the daily cap, and what a
failure does (turned off, owner told). Celery runs eagerly (see the eager_celery fixture)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from billing.ledger import services as ledger
from billing.payments import services
from billing.payments.errors import PaymentsUnavailable
from billing.payments.models import AutoTopUp, StripeEvent, TopUp
from billing.payments.services import auto_topup as auto_topup_module
from billing.payments.services import auto_topup_trigger
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.billing.payments.helpers import (
    CARD_DECLINED_AT_CHARGE,
    CARD_NEEDS_AUTHENTICATION,
    CARD_OK,
    available,
    browser_confirm_card_setup,
    close_db_connections,
    usd,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def save_card(org, user, localstripe, number: str = CARD_OK) -> AutoTopUp:
    secret = services.auto_topup_card_start(organization_id=org.pk, actor=user)
    setup_intent = browser_confirm_card_setup(localstripe.url, secret, number)
    return services.auto_topup_card_save(organization_id=org.pk, setup_intent_id=setup_intent["id"], actor=user)


def enable(org, user, *, threshold="5.00", amount="20.00", cap="100.00") -> AutoTopUp:
    return services.auto_topup_update(
        organization_id=org.pk,
        enabled=True,
        threshold_nano=usd(threshold),
        amount_nano=usd(amount),
        daily_cap_nano=usd(cap),
        actor=user,
    )


def fund(org, amount: str, key: str = "seed") -> None:
    ledger.grant_create(
        organization_id=org.pk, kind="promotional", amount_nano=usd(amount), idempotency_key=key, actor="t"
    )


def spend(org, amount: str, key: str) -> None:
    """What the gateway does after each settle: the debit, then the check with the new available credit."""
    ledger.wallet_debit(organization_id=org.pk, amount_nano=usd(amount), idempotency_key=key, actor="test")
    services.auto_topup_check(organization_id=org.pk, available_nano=available(org.pk))


def automatic(org):
    return TopUp.objects.filter(organization=org, kind="auto")


def test_a_debit_below_the_threshold_charges_the_saved_card_once(
    org_a, alice, localstripe, stripe_webhooks, eager_celery
):
    fund(org_a, "10.00")
    save_card(org_a, alice, localstripe)
    enable(org_a, alice)
    assert not automatic(org_a).exists()  # $10 is above the $5 threshold

    spend(org_a, "4.00", "r1")  # $6 left: above
    assert not automatic(org_a).exists()
    spend(org_a, "2.00", "r2")  # $4 left: crossed
    [top_up] = automatic(org_a)
    assert (top_up.status, top_up.amount_nano, top_up.card_last4) == ("processing", usd("20"), "4242")
    for n in range(3, 8):  # more usage while the charge is in flight charges nothing more
        spend(org_a, "0.50", f"r{n}")
    assert automatic(org_a).count() == 1
    assert available(org_a.pk) == usd("1.50")

    wait_for(lambda: automatic(org_a).get().status == "succeeded", what="the auto top-up's webhook")
    assert available(org_a.pk) == usd("21.50")
    spend(org_a, "1.00", "r9")  # above the threshold again: nothing
    assert automatic(org_a).count() == 1


def test_turning_it_on_below_the_threshold_tops_up_at_once(org_a, alice, localstripe, stripe_webhooks, eager_celery):
    save_card(org_a, alice, localstripe)
    enable(org_a, alice)  # the wallet is empty: no request will debit it again, so waiting for one would never end
    wait_for(lambda: available(org_a.pk) == usd("20"), what="the immediate auto top-up")
    assert automatic(org_a).count() == 1


def test_the_check_is_cheap_when_above_the_threshold(org_a, alice, localstripe, django_assert_num_queries):
    save_card(org_a, alice, localstripe)
    fund(org_a, "50.00")
    enable(org_a, alice)
    services.auto_topup_check(organization_id=org_a.pk, available_nano=usd("40"))  # loads the cache
    with django_assert_num_queries(0):
        for _ in range(100):
            services.auto_topup_check(organization_id=org_a.pk, available_nano=usd("40"))
    services.auto_topup_cache_clear()
    with django_assert_num_queries(0):  # Redis still has it
        services.auto_topup_check(organization_id=org_a.pk, available_nano=usd("40"))


def test_organizations_without_auto_top_up_are_cached_too(org_b, django_assert_num_queries):
    services.auto_topup_check(organization_id=org_b.pk, available_nano=0)
    with django_assert_num_queries(0):
        services.auto_topup_check(organization_id=org_b.pk, available_nano=0)


def test_concurrent_triggers_make_one_charge(org_a, alice, localstripe, stripe_webhooks):
    save_card(org_a, alice, localstripe)
    fund(org_a, "10.00")
    enable(org_a, alice)
    ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("8"), idempotency_key="big", actor="test")
    barrier = threading.Barrier(8)

    def charge(_: int) -> int | None:
        try:
            barrier.wait()
            top_up = services.auto_topup_charge(organization_id=org_a.pk)
            return top_up.pk if top_up else None
        finally:
            close_db_connections()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(charge, range(8)))
    assert len([r for r in results if r is not None]) == 1
    assert automatic(org_a).count() == 1
    wait_for(lambda: available(org_a.pk) == usd("22"), what="the webhook")


def test_the_in_flight_constraint_holds_without_the_lock(org_a):
    TopUp.objects.create(organization=org_a, kind="auto", status="processing", amount_nano=usd("20"))
    with pytest.raises(Exception, match="topup_one_auto_in_flight"):
        TopUp.objects.create(organization=org_a, kind="auto", status="pending", amount_nano=usd("20"))


def earlier_topup(org, status: str, amount: str = "20", *, kind: str = "auto") -> TopUp:
    """A top-up made earlier today; one that succeeded has its payment and its grant."""
    n = TopUp.objects.count()
    paid = status == "succeeded"
    return TopUp.objects.create(
        organization=org,
        kind=kind,
        status=status,
        amount_nano=usd(amount),
        stripe_payment_intent_id=f"pi_earlier_{n}" if paid else None,
        grant_id=10_000 + n if paid else None,
        succeeded_at=timezone.now() if paid else None,
    )


@pytest.mark.parametrize(("cap", "expect_charge"), [("40.00", False), ("60.00", True)])
def test_the_daily_cap_counts_what_succeeded_today(org_a, alice, localstripe, eager_celery, cap, expect_charge):
    # $40 succeeded and $20 failed today. A $40 cap is reached; with a $60 cap one more $20 charge still fits,
    # exactly, because failed ones took nothing.
    save_card(org_a, alice, localstripe)
    fund(org_a, "100.00")
    enable(org_a, alice, cap=cap)
    for status in ["succeeded", "succeeded", "failed"]:
        earlier_topup(org_a, status)
    page = Client()
    page.force_login(alice)
    assert (
        "cap is reached" in page.get("/billing/auto-top-up/").content.decode()
    ) is not expect_charge  # the page agrees
    ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("99"), idempotency_key="d", actor="t")
    top_up = services.auto_topup_charge(organization_id=org_a.pk)
    if expect_charge:
        assert top_up is not None and top_up.amount_nano == usd("20")
        assert automatic(org_a).count() == 4
    else:
        assert top_up is None
        assert automatic(org_a).count() == 3
    assert "cap is reached" in page.get("/billing/auto-top-up/").content.decode()


def test_what_counts_against_the_daily_cap(org_a, org_b):
    earlier_topup(org_a, "succeeded", "20")
    earlier_topup(org_a, "processing", "5")  # in flight: it may still take the money
    earlier_topup(org_a, "failed", "7")
    earlier_topup(org_a, "succeeded", "13", kind="manual")
    earlier_topup(org_b, "succeeded", "17")
    yesterday = earlier_topup(org_a, "succeeded", "11")
    TopUp.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert auto_topup_module.auto_topup_spent_today(organization_id=org_a.pk) == usd("25")


def test_a_declined_automatic_charge_turns_auto_top_up_off_and_tells_the_owner(
    org_a, alice, bob, localstripe, stripe_webhooks, eager_celery
):
    billing_admin = UserFactory(username="dana@example.com")
    MembershipFactory(user=billing_admin, organization=org_a, role=Role.BILLING_ADMIN)
    save_card(org_a, alice, localstripe, CARD_DECLINED_AT_CHARGE)
    fund(org_a, "10.00")
    enable(org_a, alice)
    spend(org_a, "6.00", "r1")

    [top_up] = automatic(org_a)
    assert (top_up.status, top_up.failure_message) == ("failed", "Your card was declined.")
    config = AutoTopUp.objects.get(organization=org_a)
    assert (config.enabled, config.disabled_reason) == (False, "Your card was declined.")
    [email] = mail.outbox
    assert sorted(email.to) == ["alice@example.com", "dana@example.com"]  # not bob, a developer
    assert "Your card was declined." in email.body and "turned off" in email.subject
    assert "An automatic top-up of $20.00 for Org A failed" in email.body

    # Stripe's payment_failed event arrives later: no second email, nothing else changes.
    wait_for(
        lambda: StripeEvent.objects.filter(type="payment_intent.payment_failed").exclude(status="received"),
        what="the payment_failed webhook",
    )
    assert len(mail.outbox) == 1
    assert available(org_a.pk) == usd("4")
    # Further usage does not try again, and the page says why.
    spend(org_a, "1.00", "r2")
    assert automatic(org_a).count() == 1
    page = Client()
    page.force_login(alice)
    html = page.get("/billing/auto-top-up/").content.decode()
    assert "turned off" in html and "Your card was declined." in html


def test_a_card_that_needs_authentication_cannot_be_charged_off_session(
    org_a, alice, localstripe, stripe_webhooks, eager_celery
):
    save_card(org_a, alice, localstripe, CARD_NEEDS_AUTHENTICATION)
    fund(org_a, "10.00")
    enable(org_a, alice)
    spend(org_a, "6.00", "r1")
    [top_up] = automatic(org_a)
    assert (top_up.status, top_up.failure_code) == ("failed", "authentication_required")
    assert not AutoTopUp.objects.get(organization=org_a).enabled
    assert len(mail.outbox) == 1


def test_a_charge_that_never_reached_stripe_is_sent_again_with_its_key(
    org_a, alice, localstripe, stripe_webhooks, settings
):
    save_card(org_a, alice, localstripe)
    fund(org_a, "10.00")
    enable(org_a, alice)
    ledger.wallet_debit(organization_id=org_a.pk, amount_nano=usd("8"), idempotency_key="d", actor="t")
    stripe_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable
    with pytest.raises(PaymentsUnavailable):
        services.auto_topup_charge(organization_id=org_a.pk)
    [top_up] = automatic(org_a)
    assert (top_up.status, top_up.stripe_payment_intent_id) == ("processing", None)
    # Within its sender's lease nobody sends it again (neither a new trigger nor the sweeper).
    assert services.auto_topup_charge(organization_id=org_a.pk) is None
    assert services.auto_topups_resume() == 0

    settings.STRIPE_API_BASE = stripe_base
    expired = timezone.now() - timedelta(seconds=auto_topup_module.SEND_LEASE_SECONDS + 1)
    TopUp.objects.filter(pk=top_up.pk).update(updated_at=expired)
    assert services.auto_topups_resume() == 1
    wait_for(lambda: available(org_a.pk) == usd("22"), what="the resent charge's webhook")
    assert automatic(org_a).count() == 1


async def test_the_async_check_enqueues_below_the_threshold(org_a, alice, localstripe, eager_celery):
    from asgiref.sync import sync_to_async

    await sync_to_async(save_card)(org_a, alice, localstripe)
    await sync_to_async(fund)(org_a, "10.00")
    await sync_to_async(enable)(org_a, alice)
    await services.aauto_topup_check(organization_id=org_a.pk, available_nano=usd("6"))
    assert await cache.aget(auto_topup_trigger._queued_key(org_a.pk)) is None
    await services.aauto_topup_check(organization_id=org_a.pk, available_nano=usd("4"))
    await asyncio.sleep(0)
    count = await TopUp.objects.filter(organization=org_a, kind="auto").acount()
    # The charge ran (eagerly) and found the wallet above the threshold ($10): nothing to charge, nothing created.
    assert count == 0
    assert await cache.aget(auto_topup_trigger._queued_key(org_a.pk)) == 1
