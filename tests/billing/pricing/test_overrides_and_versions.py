"""Negotiated prices per organization, price versions changing mid-period, and a scheduled future version."""

import pytest
from django.db import transaction

from accounts.models import AuditEvent
from billing.pricing import rating, selectors, services
from billing.pricing.errors import PricingConflict
from billing.pricing.models import PriceOverride
from core.errors import ApplicationError
from tests.billing.pricing.conftest import at

NOW = at("2026-03-10 12:00")


def test_an_override_changes_the_organizations_prices_and_is_audited(book, org_a, org_b, staff):
    override = services.override_create(
        organization_id=org_a.pk,
        model="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        discount_bps=1_000,
        reason="annual contract #42",
        actor=staff,
        now=NOW,
    )
    ctx = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o", at=NOW)
    # Input is the negotiated $2.00; cached input and output get the 10 % discount; the version stays the list one.
    assert (
        ctx.prices.input_price_micro_per_mtok,
        ctx.prices.cached_input_price_micro_per_mtok,
        ctx.prices.output_price_micro_per_mtok,
        ctx.prices.override_id,
    ) == (2_000_000, 1_125_000, 9_000_000, override.pk)
    assert ctx.prices.price_version_id == selectors.price_version_at(model_slug="gpt-4o", at=NOW).pk
    rated = services.usage_rate(organization_id=org_a.pk, usage=rating.Usage("gpt-4o", 1_000, 0, 100), at=NOW)
    assert rated.credit_nano == 2_000_000 + 900_000
    assert {line.ref for line in rated.lines} == {f"override:{override.pk}"}
    # Another organization pays list price.
    assert (
        selectors.pricing_context_get(organization_id=org_b.pk, model_slug="gpt-4o", at=NOW).prices.override_id is None
    )
    event = AuditEvent.objects.get(action="pricing.override.create")
    assert (event.actor, event.organization_id, event.reason) == (staff, org_a.pk, "annual contract #42")


def test_group_override_and_model_override_precedence(book, org_a, staff):
    services.override_create(
        organization_id=org_a.pk, group="gpt-4o", discount_bps=2_000, reason="group deal", actor=staff, now=NOW
    )
    mini = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o-mini", at=NOW)
    assert mini.prices.input_price_micro_per_mtok == 120_000
    services.override_create(
        organization_id=org_a.pk, model="gpt-4o-mini", discount_bps=5_000, reason="mini deal", actor=staff, now=NOW
    )
    mini = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="gpt-4o-mini", at=NOW)
    assert mini.prices.input_price_micro_per_mtok == 75_000  # the model's own override wins


def test_overrides_never_overlap_and_end_going_forward(book, org_a, staff):
    first = services.override_create(
        organization_id=org_a.pk, model="gpt-4o", discount_bps=1_000, reason="deal", actor=staff, now=NOW
    )
    with pytest.raises(PricingConflict, match="already has a negotiated price"):
        services.override_create(
            organization_id=org_a.pk, model="gpt-4o", discount_bps=2_000, reason="again", actor=staff, now=NOW
        )
    with pytest.raises(ApplicationError, match="in the past"):
        services.override_end(override_id=first.pk, reason="x", actor=staff, at=at("2026-03-01 00:00"), now=NOW)
    services.override_end(
        override_id=first.pk, reason="contract ended", actor=staff, at=at("2026-04-01 00:00"), now=NOW
    )
    assert (
        selectors.pricing_context_get(
            organization_id=org_a.pk, model_slug="gpt-4o", at=at("2026-04-01 00:00")
        ).prices.override_id
        is None
    )
    services.override_create(
        organization_id=org_a.pk,
        model="gpt-4o",
        discount_bps=2_000,
        reason="renewed deal",
        actor=staff,
        effective_from=at("2026-04-01 00:00"),
        now=NOW,
    )
    assert AuditEvent.objects.filter(action__startswith="pricing.override").count() == 3
    with pytest.raises(ApplicationError, match="reason is required"):
        services.override_create(organization_id=org_a.pk, model="gpt-4o-mini", discount_bps=1, reason=" ", actor=staff)
    with pytest.raises(ApplicationError, match="one model"):
        services.override_create(
            organization_id=org_a.pk, group="gpt-4o", input_price_micro_per_mtok=1, reason="r", actor=staff
        )


def test_a_price_change_mid_period_rates_each_usage_at_its_version(book, org_a, staff):
    old = selectors.price_version_at(model_slug="gpt-4o-mini", at=NOW)
    new = services.price_version_create(
        model_slug="gpt-4o-mini",
        input_price_micro_per_mtok=100_000,
        output_price_micro_per_mtok=400_000,
        effective_from=at("2026-03-15 00:00"),
        actor=staff,
        now=NOW,
    )
    usage = rating.Usage("gpt-4o-mini", input_tokens=1_000_000)
    with transaction.atomic():
        before = services.usage_rate(organization_id=org_a.pk, usage=usage, at=at("2026-03-14 23:59"))
        after = services.usage_rate(organization_id=org_a.pk, usage=usage, at=at("2026-03-15 00:00"))
    assert (before.price_version_id, before.credit_nano) == (old.pk, 150_000_000)
    assert (after.price_version_id, after.credit_nano) == (new.pk, 100_000_000)
    assert all(line.price_version_id == new.pk for line in after.lines)


def test_a_scheduled_version_shows_up_and_can_be_cancelled(book, staff):
    future = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=at("2026-06-01 00:00"),
        actor=staff,
        now=NOW,
    )
    assert [v.pk for v in selectors.price_versions_scheduled(now=NOW)] == [future.pk]
    assert selectors.price_version_at(model_slug="gpt-4o", at=at("2026-06-01 00:00")).pk == future.pk
    services.price_version_cancel(price_version_id=future.pk, actor=staff, now=NOW, reason="postponed")
    assert selectors.price_versions_scheduled(now=NOW) == []
    assert AuditEvent.objects.filter(action="pricing.price_version.cancel", reason="postponed").exists()


def test_a_version_with_rated_usage_cannot_change_even_in_the_database(book, org_a):
    from django.db import IntegrityError

    from billing.pricing.models import AIModel, PriceVersion
    from billing.usage.models import UsageRecord

    version = selectors.price_version_at(model_slug="demo", at=NOW)
    UsageRecord.objects.create(
        organization=org_a,
        request_id="r1",
        endpoint="chat",
        model=AIModel.objects.get(slug="demo"),
        status="ok",
        price_version=version,
    )
    with pytest.raises(IntegrityError, match="can never change"), transaction.atomic():
        PriceVersion.objects.filter(pk=version.pk).update(input_price_micro_per_mtok=1)


def test_long_context_version(book, staff):
    version = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_500_000,
        output_price_micro_per_mtok=10_000_000,
        long_context_threshold_tokens=100_000,
        long_input_price_micro_per_mtok=5_000_000,
        long_cached_input_price_micro_per_mtok=2_500_000,
        long_output_price_micro_per_mtok=15_000_000,
        effective_from=at("2026-04-01 00:00"),
        now=NOW,
        actor=staff,
    )
    prices = selectors.prices_of(version)
    assert rating.kind_rates(prices, 100_001) == (5_000_000, 2_500_000, 15_000_000)
    with pytest.raises(ApplicationError, match="all three long prices"):
        services.price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=1,
            output_price_micro_per_mtok=1,
            long_context_threshold_tokens=10,
            effective_from=at("2026-05-01 00:00"),
            now=NOW,
        )


def test_an_override_discount_rounds_every_price_down_and_keeps_cached_within_input():
    """Pure: a discounted price is rounded down (the customer never pays a fraction more), the discount reaches
    the long-context prices and the request fee, and a discounted cached price never exceeds an absolute input
    price."""
    prices = rating.Prices(
        price_version_id=7,
        input_price_micro_per_mtok=1_000_001,
        cached_input_price_micro_per_mtok=999_999,
        output_price_micro_per_mtok=10_000_009,
        request_fee_nano=7,
        long_context_threshold_tokens=100,
        long_input_price_micro_per_mtok=3,
        long_cached_input_price_micro_per_mtok=None,
        long_output_price_micro_per_mtok=19,
    )
    discounted = selectors.prices_apply_override(prices, PriceOverride(pk=5, discount_bps=1_000))
    assert (
        discounted.input_price_micro_per_mtok,
        discounted.cached_input_price_micro_per_mtok,
        discounted.output_price_micro_per_mtok,
        discounted.request_fee_nano,
        discounted.long_input_price_micro_per_mtok,
        discounted.long_cached_input_price_micro_per_mtok,
        discounted.long_output_price_micro_per_mtok,
        discounted.override_id,
        discounted.price_version_id,
    ) == (900_000, 899_999, 9_000_008, 6, 2, None, 17, 5, 7)
    absolute = selectors.prices_apply_override(
        prices, PriceOverride(pk=6, discount_bps=1_000, input_price_micro_per_mtok=500_000)
    )
    assert (absolute.input_price_micro_per_mtok, absolute.cached_input_price_micro_per_mtok) == (500_000, 500_000)
    assert selectors.prices_apply_override(prices, None) is prices
