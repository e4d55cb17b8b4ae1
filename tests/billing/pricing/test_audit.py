"""What the pricing services write to the audit log: who, the note or reason typed, the target in words, the
model, and the fields changed with their values before and after. The staff REST API writes through the same
services, so its entries say the same."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.pricing import services
from billing.pricing.errors import StaleConfirmation
from billing.pricing.models import PriceVersion
from billing.pricing.services import AllowanceSpec

pytestmark = pytest.mark.django_db


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


def current_version(slug: str) -> PriceVersion:
    return PriceVersion.objects.filter(model__slug=slug, cancelled_at__isnull=True).latest("effective_from")


def test_a_published_price_records_its_note_and_the_prices_it_replaces(book, staff):
    old = current_version("gpt-4o-mini")
    version = services.price_version_create(
        model_slug="gpt-4o-mini",
        input_price_micro_per_mtok=120_000,
        output_price_micro_per_mtok=480_000,
        note="spring price cut",
        actor=staff,
    )
    event = last("pricing.price_version.create")
    assert (event.actor, event.actor_label, event.reason) == (staff, "sam@staff.example.com", "spring price cut")
    assert event.model_slug == "gpt-4o-mini"
    assert event.target == f"PriceVersion:{version.pk}"
    assert event.target_label == f"{version.model.display_name} (gpt-4o-mini): price version #{version.pk}"
    assert event.changes["price_version_id"] == {"before": old.pk, "after": version.pk}
    assert event.changes["input_price_micro_per_mtok"] == {"before": 150_000, "after": 120_000}
    assert event.changes["cached_input_price_micro_per_mtok"] == {"before": 75_000, "after": 120_000}
    assert event.changes["output_price_micro_per_mtok"] == {"before": 600_000, "after": 480_000}
    assert event.changes["effective_from"]["after"] == version.effective_from.isoformat()
    # Only what changed: the currency and the service-tier factors are the same on both sides.
    assert "currency" not in event.changes and "batch_factor_bps" not in event.changes
    assert "note" not in event.changes  # the note is the entry's reason


def test_a_models_first_price_has_nothing_before(book, staff):
    services.model_create(
        slug="new-model",
        display_name="New model",
        encoding="o200k_base",
        context_window=128_000,
        default_max_tokens=4_096,
        max_output_tokens=16_384,
        actor=staff,
    )
    services.price_version_create(
        model_slug="new-model", input_price_micro_per_mtok=1_000_000, output_price_micro_per_mtok=2_000_000, actor=staff
    )
    event = last("pricing.price_version.create")
    assert event.changes["input_price_micro_per_mtok"] == {"before": None, "after": 1_000_000}
    created = last("pricing.model.create")
    assert (created.model_slug, created.target_label) == ("new-model", "New model (new-model)")
    assert created.changes["display_name"] == {"before": None, "after": "New model"}


def test_a_scheduled_price_replaces_the_version_in_effect_at_its_start(book, staff):
    now = timezone.now()
    first = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=now + timedelta(days=10),
        actor=staff,
    )
    review = services.price_version_review(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=1_800_000,
        output_price_micro_per_mtok=7_000_000,
        effective_from=now + timedelta(days=20),
    )
    assert review.replaces == first and review.followed_by is None and not review.starts_now
    between = services.price_version_review(
        model_slug="gpt-4o", input_price_micro_per_mtok=1, output_price_micro_per_mtok=1
    )
    assert between.starts_now and between.replaces != first and between.followed_by == first
    services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=1_800_000,
        output_price_micro_per_mtok=7_000_000,
        effective_from=now + timedelta(days=20),
        confirmed_replaces_id=first.pk,
        note="second step",
        actor=staff,
    )
    event = last("pricing.price_version.create")
    assert event.changes["input_price_micro_per_mtok"] == {"before": 2_000_000, "after": 1_800_000}
    assert event.reason == "second step"


def test_a_stale_confirmation_is_refused_and_writes_nothing(book, staff):
    shown = current_version("gpt-4o")
    services.price_version_create(
        model_slug="gpt-4o", input_price_micro_per_mtok=2_200_000, output_price_micro_per_mtok=9_000_000, actor=staff
    )
    versions, events = PriceVersion.objects.count(), AuditEvent.objects.count()
    with pytest.raises(StaleConfirmation, match="changed since this was confirmed"):
        services.price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=2_000_000,
            output_price_micro_per_mtok=8_000_000,
            confirmed_replaces_id=shown.pk,
            actor=staff,
        )
    assert (PriceVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)
    with pytest.raises(StaleConfirmation):  # confirmed "no price yet" for a model that has one
        services.price_version_create(
            model_slug="gpt-4o",
            input_price_micro_per_mtok=2_000_000,
            output_price_micro_per_mtok=8_000_000,
            confirmed_replaces_id=services.REPLACES_NOTHING,
        )


def test_update_and_cancel_of_a_scheduled_version_record_before_after_and_reason(book, staff):
    later = timezone.now() + timedelta(days=5)
    version = services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=later,
        actor=staff,
    )
    services.price_version_update(
        price_version_id=version.pk, output_price_micro_per_mtok=7_500_000, note="rounder figure", actor=staff
    )
    update = last("pricing.price_version.update")
    assert update.changes == {"output_price_micro_per_mtok": {"before": 8_000_000, "after": 7_500_000}}
    assert update.reason == "rounder figure" and update.model_slug == "gpt-4o"
    services.price_version_cancel(price_version_id=version.pk, reason="finance said no", actor=staff)
    cancel = last("pricing.price_version.cancel")
    assert cancel.reason == "finance said no"
    assert cancel.changes["status"] == {"before": "scheduled", "after": "cancelled"}


def test_overrides_plans_offers_tiers_and_models_record_what_changed(book, staff, org_a):
    override = services.override_create(
        organization_id=org_a.pk, model="gpt-4o", discount_bps=1500, reason="contract #9", actor=staff
    )
    created = last("pricing.override.create")
    assert (created.organization_id, created.model_slug, created.reason) == (org_a.pk, "gpt-4o", "contract #9")
    assert created.target_label == f"negotiated price #{override.pk} on model:gpt-4o"
    assert created.changes["discount_bps"] == {"before": None, "after": 1500}
    services.override_end(override_id=override.pk, reason="contract over", actor=staff)
    ended = last("pricing.override.end")
    assert ended.reason == "contract over"
    assert ended.changes["effective_until"]["before"] is None and ended.changes["effective_until"]["after"]

    services.plan_create(
        slug="pro",
        name="Pro",
        fee_nano=20_000_000_000,
        allowances=[AllowanceSpec(included_tokens=1_000_000, model="gpt-4o")],
        actor=staff,
    )
    services.plan_update(plan_slug="pro", is_active=False, name="Pro (old)", actor=staff)
    plan = last("pricing.plan.update")
    assert plan.changes == {
        "name": {"before": "Pro", "after": "Pro (old)"},
        "is_active": {"before": True, "after": False},
    }
    assert plan.target_label == "plan Pro (old) (pro)"

    offer = services.commitment_offer_create(
        name="gpt-4o 100M",
        model="gpt-4o",
        committed_tokens_per_month=100_000_000,
        term_months=3,
        discount_bps=2000,
        payment="upfront",
        blended_price_micro_per_mtok=4_375_000,
        actor=staff,
    )
    services.commitment_offer_update(offer_id=offer.pk, discount_bps=2500, actor=staff)
    offer_event = last("pricing.commitment_offer.update")
    assert offer_event.changes == {"discount_bps": {"before": 2000, "after": 2500}}
    assert offer_event.model_slug == "gpt-4o"

    services.model_update(model_slug="gpt-4o", display_name="GPT-4o (2024)", actor=staff)
    model_event = last("pricing.model.update")
    assert list(model_event.changes) == ["display_name"]
    assert model_event.changes["display_name"]["after"] == "GPT-4o (2024)"


def test_tier_schedule_changes_record_before_and_after(book, staff):
    start = (timezone.now() + timedelta(days=62)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    schedule = services.tier_schedule_create(
        name="Volume",
        mode="graduated",
        tiers=[(0, 10_000), (1_000_000_000_000, 9_000)],
        effective_from=start,
        model="gpt-4o",
        actor=staff,
    )
    services.tier_schedule_update(schedule_id=schedule.pk, tiers=[(0, 10_000), (1_000_000_000_000, 8_000)], actor=staff)
    event = last("pricing.tier_schedule.update")
    assert event.model_slug == "gpt-4o"
    assert event.changes == {
        "tiers": {
            "before": [[0, 10_000], [1_000_000_000_000, 9_000]],
            "after": [[0, 10_000], [1_000_000_000_000, 8_000]],
        }
    }


def test_the_staff_api_records_the_note_and_before_after_through_the_same_services(client, staff, book):
    client.force_login(staff)
    response = client.post(
        "/api/staff/price-versions/",
        json.dumps({"model": "gpt-4o-mini", "input_price": "0.12", "output_price": "0.48", "note": "api cut"}),
        content_type="application/json",
    )
    assert response.status_code == 201
    event = last("pricing.price_version.create")
    assert (event.reason, event.actor, event.model_slug) == ("api cut", staff, "gpt-4o-mini")
    assert event.changes["output_price_micro_per_mtok"] == {"before": 600_000, "after": 480_000}
    version_id = response.json()["id"]
    assert event.target_label.endswith(f"price version #{version_id}")
