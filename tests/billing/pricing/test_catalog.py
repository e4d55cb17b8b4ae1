from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from billing.pricing import rating, selectors, services
from billing.pricing.errors import ModelNotFound, PriceVersionLocked, PricingConflict
from billing.pricing.models import AIModel, PriceVersion
from billing.pricing.price_book import PRICE_BOOK, SEED_EFFECTIVE_FROM
from core.errors import ApplicationError

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def book():
    services.price_book_seed()


def test_seed_is_idempotent_and_keeps_staff_changes(book):
    services.model_update(model_slug="gpt-4o", display_name="GPT-4o (renamed)")
    services.price_book_seed()
    assert AIModel.objects.count() == len(PRICE_BOOK)
    assert PriceVersion.objects.count() == len(PRICE_BOOK)
    assert AIModel.objects.get(slug="gpt-4o").display_name == "GPT-4o (renamed)"


def test_seed_has_published_prices_and_encodings(book):
    gpt4o = selectors.price_version_at(model_slug="gpt-4o", at=NOW)
    assert (
        gpt4o.input_price_micro_per_mtok,
        gpt4o.cached_input_price_micro_per_mtok,
        gpt4o.output_price_micro_per_mtok,
    ) == (2_500_000, 1_250_000, 10_000_000)
    assert gpt4o.model.encoding == "o200k_base"
    assert selectors.price_version_at(model_slug="text-embedding-3-small", at=NOW).model.kind == "embedding"
    assert selectors.price_version_at(model_slug="demo", at=NOW).input_price_micro_per_mtok == 100_000
    assert all(entry["source"] for entry in PRICE_BOOK)


def test_price_version_at_picks_the_version_in_effect(book):
    later = NOW + timedelta(days=5)
    new = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=later,
        now=NOW,
    )
    assert selectors.price_version_at(model_slug="gpt-4o", at=later - timedelta(microseconds=1)).pk != new.pk
    assert selectors.price_version_at(model_slug="gpt-4o", at=later).pk == new.pk
    # cached price defaults to the input price when not given
    assert new.cached_input_price_micro_per_mtok == 2_000_000


def test_unknown_model_and_model_without_price():
    with pytest.raises(ModelNotFound, match="does not exist"):
        selectors.price_version_at(model_slug="nope", at=NOW)
    services.price_book_seed()
    with pytest.raises(ModelNotFound, match="no price"):
        selectors.price_version_at(model_slug="gpt-4o", at=SEED_EFFECTIVE_FROM - timedelta(seconds=1))


def test_effective_version_never_changes_but_future_one_can(book):
    current = selectors.price_version_at(model_slug="gpt-4o", at=NOW)
    with pytest.raises(PriceVersionLocked):
        services.price_version_update(price_version_id=current.pk, input_price_micro_per_mtok=1, now=NOW)
    with pytest.raises(PriceVersionLocked):
        services.price_version_cancel(price_version_id=current.pk, now=NOW)

    future = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=NOW + timedelta(days=1),
        now=NOW,
    )
    services.price_version_update(price_version_id=future.pk, output_price_micro_per_mtok=7_000_000, now=NOW)
    future.refresh_from_db()
    assert future.output_price_micro_per_mtok == 7_000_000
    # once its time has come it is locked too
    with pytest.raises(PriceVersionLocked):
        services.price_version_update(
            price_version_id=future.pk, output_price_micro_per_mtok=1, now=NOW + timedelta(days=1)
        )
    services.price_version_cancel(price_version_id=future.pk, now=NOW)
    assert selectors.price_version_at(model_slug="gpt-4o", at=NOW + timedelta(days=2)).pk == current.pk


def test_duplicate_past_and_invalid_versions_rejected(book):
    when = NOW + timedelta(days=1)
    services.price_version_create(
        model_slug="gpt-4o", input_price_micro_per_mtok=1, output_price_micro_per_mtok=1, effective_from=when, now=NOW
    )
    with pytest.raises(PricingConflict, match="already has a price version"):
        services.price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=2,
            output_price_micro_per_mtok=2,
            effective_from=when,
            now=NOW,
        )
    with pytest.raises(PricingConflict, match="past"):
        services.price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=2,
            output_price_micro_per_mtok=2,
            effective_from=NOW - timedelta(days=1),
            now=NOW,
        )
    with pytest.raises(ApplicationError, match="non-negative"):
        services.price_version_create(
            model_slug="gpt-4o", input_price_micro_per_mtok=-1, output_price_micro_per_mtok=2, now=NOW
        )
    with pytest.raises(ModelNotFound):
        services.price_version_create(model_slug="nope", input_price_micro_per_mtok=1, output_price_micro_per_mtok=1)


def test_database_rejects_duplicate_start_and_negative_price(book):
    model = AIModel.objects.get(slug="gpt-4o")
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceVersion.objects.create(
            model=model,
            input_price_micro_per_mtok=1,
            cached_input_price_micro_per_mtok=1,
            output_price_micro_per_mtok=1,
            effective_from=SEED_EFFECTIVE_FROM,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceVersion.objects.create(
            model=model,
            input_price_micro_per_mtok=-1,
            cached_input_price_micro_per_mtok=-1,
            output_price_micro_per_mtok=1,
            effective_from=NOW,
        )


def test_catalog_lists_callable_models_with_current_prices(book):
    services.model_update(model_slug="llama-3.1-8b-instruct", status="deprecated", sunset_at=NOW + timedelta(days=1))
    services.model_update(model_slug="llama-3.1-70b-instruct", status="deprecated", sunset_at=NOW - timedelta(days=1))
    entries = {e.slug: e for e in selectors.catalog(at=NOW)}
    assert "llama-3.1-8b-instruct" in entries
    assert "llama-3.1-70b-instruct" not in entries
    assert entries["gpt-4o-mini"].output_price_micro_per_mtok == 600_000
    assert entries["gpt-4o"].context_window == 128_000


def test_max_charge_covers_prompt_max_tokens_fee_and_priority(book):
    prices = selectors.pricing_context_get(organization_id=1, model_slug="gpt-4o", at=NOW).prices
    # gpt-4o: 1,000 prompt tokens at $2.50/M = 2,500,000 nano; 500 output at $10/M = 5,000,000 nano
    assert rating.max_charge_nano(prices=prices, prompt_tokens=1_000, max_tokens=500) == 7_500_000
    assert rating.max_charge_nano(prices=prices, prompt_tokens=1_000, max_tokens=500, service_tier="priority") == (
        12_750_000
    )
    with pytest.raises(ModelNotFound):
        selectors.pricing_context_get(organization_id=1, model_slug="nope", at=NOW)


def test_pay_as_you_go_rating_charges_each_kind_at_its_price(book):
    context = selectors.pricing_context_get(organization_id=1, model_slug="gpt-4o-mini", at=NOW)
    usage = rating.Usage(model_slug="gpt-4o-mini", input_tokens=1_000, cached_input_tokens=400, output_tokens=3)
    rated = rating.rate(usage=usage, context=context, state=rating.PeriodState())
    # 600 uncached at $0.15/M = 90,000 nano; 400 cached at $0.075/M = 30,000; 3 output at $0.60/M = 1,800.
    assert [(line.kind, line.tokens, line.amount_nano) for line in rated.lines] == [
        ("input", 600, 90_000),
        ("cached_input", 400, 30_000),
        ("output", 3, 1_800),
    ]
    assert rated.credit_nano == 121_800
    assert rated.price_version_id == context.prices.price_version_id
