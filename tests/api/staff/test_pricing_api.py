"""The staff pricing REST API: staff only, every price change audited, bad input refused with a clear 4xx."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.pricing import services
from billing.pricing.models import Plan, PriceOverride, PriceVersion, Subscription, TierSchedule
from billing.pricing.periods import add_months, month_start
from tests.accounts.factories import UserFactory
from tests.billing.pricing.conftest import fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(db):
    services.price_book_seed()


@pytest.fixture
def staff(db):
    return UserFactory(username="sam@staff.example.com", is_staff=True)


@pytest.fixture
def api(client, staff, book):
    client.force_login(staff)
    return client


def post(client, url, body, *, method="post"):
    payload = body if isinstance(body, str) else json.dumps(body)
    return getattr(client, method)(url, payload, content_type="application/json")


def error(response):
    return response.json()["error"]


ENDPOINTS = [
    ("get", "/api/staff/models/"),
    ("post", "/api/staff/models/"),
    ("get", "/api/staff/models/gpt-4o/"),
    ("get", "/api/staff/price-versions/"),
    ("post", "/api/staff/price-versions/"),
    ("patch", "/api/staff/price-versions/1/"),
    ("post", "/api/staff/price-versions/1/cancel/"),
    ("get", "/api/staff/tier-schedules/"),
    ("post", "/api/staff/tier-schedules/"),
    ("get", "/api/staff/plans/"),
    ("post", "/api/staff/plans/"),
    ("get", "/api/staff/subscriptions/"),
    ("post", "/api/staff/subscriptions/"),
    ("get", "/api/staff/commitment-offers/"),
    ("post", "/api/staff/commitment-offers/"),
    ("get", "/api/staff/commitments/"),
    ("get", "/api/staff/overrides/"),
    ("post", "/api/staff/overrides/"),
    ("post", "/api/staff/pricing/preview/"),
    ("get", "/api/staff/pricing/audit/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_non_staff_get_403(client, alice, book, method, url):
    def call():
        if method == "get":
            return client.get(url)
        return getattr(client, method)(url, "{}", content_type="application/json")

    assert call().status_code == 401  # not authenticated at all
    client.force_login(alice)  # an organization owner, but not staff
    response = call()
    assert response.status_code == 403
    assert error(response)["type"] == "permission_error"


def test_models_list_current_and_scheduled_prices(api, staff):
    services.price_version_create(
        model_slug="gpt-4o",
        input_price_micro_per_mtok=2_000_000,
        output_price_micro_per_mtok=8_000_000,
        effective_from=timezone.now() + timedelta(days=10),
        actor=staff,
    )
    models = {m["slug"]: m for m in api.get("/api/staff/models/").json()["data"]}
    gpt = models["gpt-4o"]
    assert (gpt["current_price"]["input_price"], gpt["current_price"]["input_price_micro_per_mtok"]) == (
        "2.50",
        2_500_000,
    )
    assert [v["input_price"] for v in gpt["scheduled_prices"]] == ["2.00"]
    assert models["gpt-4o-mini"]["current_price"]["input_price"] == "0.15"


def test_schedule_edit_and_cancel_a_price_version(api, staff):
    when = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    body = {
        "model": "gpt-4o-mini",
        "input_price": "0.12",
        "cached_input_price": "0.06",
        "output_price": "0.48",
        "effective_from": when.isoformat(),
        "note": "spring price cut",
        "long_context": {
            "threshold_tokens": 100000,
            "input_price": "0.24",
            "cached_input_price": "0.12",
            "output_price": "0.96",
        },
    }
    created = post(api, "/api/staff/price-versions/", body)
    assert created.status_code == 201, created.json()
    version = created.json()
    assert (version["status"], version["input_price_micro_per_mtok"], version["created_by"]) == (
        "scheduled",
        120_000,
        staff.email,
    )
    assert version["long_context"]["threshold_tokens"] == 100_000
    patched = post(api, f"/api/staff/price-versions/{version['id']}/", {"output_price": "0.50"}, method="patch")
    assert patched.status_code == 200 and patched.json()["output_price"] == "0.50"
    cancelled = post(api, f"/api/staff/price-versions/{version['id']}/cancel/", {"reason": "postponed"})
    assert cancelled.json()["status"] == "cancelled"
    actions = list(AuditEvent.objects.filter(target=f"PriceVersion:{version['id']}").values_list("action", flat=True))
    assert sorted(actions) == [
        "pricing.price_version.cancel",
        "pricing.price_version.create",
        "pricing.price_version.update",
    ]
    assert post(api, f"/api/staff/price-versions/{version['id']}/cancel/", {}).status_code == 404


def test_a_reasoning_price_is_set_read_and_cleared(api):
    body = {
        "model": "gpt-4o",
        "input_price": "1",
        "output_price": "4",
        "reasoning_price": "16",
        "effective_from": FUTURE,
    }
    created = post(api, "/api/staff/price-versions/", body)
    assert created.status_code == 201, created.json()
    version = created.json()
    assert (version["reasoning_price"], version["reasoning_price_micro_per_mtok"]) == ("16.00", 16_000_000)
    cleared = post(api, f"/api/staff/price-versions/{version['id']}/", {"reasoning_price": None}, method="patch")
    assert cleared.status_code == 200, cleared.json()
    assert (cleared.json()["reasoning_price"], cleared.json()["reasoning_price_micro_per_mtok"]) == (None, None)
    assert PriceVersion.objects.get(pk=version["id"]).reasoning_price_micro_per_mtok is None


def test_publishing_now_and_editing_an_effective_version_is_refused(api):
    created = post(api, "/api/staff/price-versions/", {"model": "demo", "input_price": "0.2", "output_price": "0.4"})
    assert created.status_code == 201 and created.json()["status"] == "effective"
    refused = post(api, f"/api/staff/price-versions/{created.json()['id']}/", {"input_price": "0.1"}, method="patch")
    assert refused.status_code == 409
    assert error(refused)["code"] == "price_version_in_effect"


FUTURE = "2099-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-4o", "input_price": "-1", "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": 2.5, "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": "0.0000001", "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": "1e30", "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": "NaN", "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": "two", "output_price": "1"}, 400, "input_price"),
        ({"model": "gpt-4o", "input_price": ["1"], "output_price": "1"}, 400, "input_price"),
        (
            {"model": "gpt-4o", "input_price": "1", "cached_input_price": "2", "output_price": "1"},
            400,
            "cached_input_price_micro_per_mtok",
        ),
        ({"model": "gpt-4o", "input_price": "1"}, 400, "output_price"),
        ({"model": "nope", "input_price": "1", "output_price": "1"}, 404, "model"),
        ({"model": "gpt-4o", "input_price": "1", "output_price": "1", "imput_price": "1"}, 400, "imput_price"),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "flex_factor_bps": 20_000},
            400,
            "flex_factor_bps",
        ),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "priority_factor_bps": 10**30},
            400,
            "priority_factor_bps",
        ),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "effective_from": "2020-01-01T00:00:00Z"},
            409,
            "effective_from",
        ),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "effective_from": "yesterday"},
            400,
            "effective_from",
        ),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "long_context": {"threshold_tokens": 5}},
            400,
            "long_context.input_price",
        ),
        (
            {"model": "gpt-4o", "input_price": "1", "output_price": "1", "reasoning_price": "-1"},
            400,
            "reasoning_price",
        ),
        ("{not json", 400, None),
        ("[1, 2]", 400, None),
    ],
)
def test_bad_price_versions_are_refused_and_nothing_is_written(api, body, status, param):
    before = PriceVersion.objects.count()
    response = post(api, "/api/staff/price-versions/", body)
    assert response.status_code == status, response.content
    assert error(response)["message"]
    assert error(response)["param"] == param
    assert PriceVersion.objects.count() == before


def test_overlapping_versions_are_refused(api):
    body = {"model": "gpt-4o", "input_price": "1", "output_price": "1", "effective_from": FUTURE}
    assert post(api, "/api/staff/price-versions/", body).status_code == 201
    clash = post(api, "/api/staff/price-versions/", body)
    assert clash.status_code == 409 and "already has a price version" in error(clash)["message"]


def _next_month() -> str:
    return add_months(month_start(timezone.now()), 1).isoformat()


def test_tier_schedules(api):
    body = {
        "name": "open weights",
        "group": "open-weight",
        "mode": "graduated",
        "effective_from": _next_month(),
        "tiers": [{"start": "0", "factor_bps": 10000}, {"start": "1000.00", "factor_bps": 9000}],
    }
    created = post(api, "/api/staff/tier-schedules/", body)
    assert created.status_code == 201, created.json()
    assert created.json()["tiers"][1] == {"start": "1000.00", "start_nano": 10**12, "factor_bps": 9000}
    assert created.json()["scope"] == {"model": None, "group": "open-weight"}
    out_of_order = body | {"tiers": [{"start": "0", "factor_bps": 10000}, {"start": "0", "factor_bps": 9000}]}
    response = post(api, "/api/staff/tier-schedules/", out_of_order | {"model": "gpt-4o", "group": None})
    assert (response.status_code, error(response)["code"]) == (400, "tiers_out_of_order")
    rising = body | {
        "group": "gpt-4o",
        "tiers": [{"start": "0", "factor_bps": 5000}, {"start": "1", "factor_bps": 6000}],
    }
    assert post(api, "/api/staff/tier-schedules/", rising).status_code == 400
    assert post(api, "/api/staff/tier-schedules/", body | {"effective_from": "2099-01-02T00:00:00Z"}).status_code == 400
    assert post(api, "/api/staff/tier-schedules/", body).status_code == 409  # overlaps the first
    assert post(api, "/api/staff/tier-schedules/", body | {"group": "nothing-here"}).status_code == 400
    assert TierSchedule.objects.count() == 1
    cancelled = post(api, f"/api/staff/tier-schedules/{created.json()['id']}/cancel/", {})
    assert cancelled.status_code == 200 and cancelled.json()["cancelled_at"]


def test_plans_subscriptions_and_changes(api, org_a):
    fund(org_a, "100.00")
    plan = {
        "slug": "pro",
        "name": "Pro",
        "fee": "20.00",
        "usage_discount_bps": 1000,
        "requests_per_minute": 600,
        "allowances": [{"model": "gpt-4o", "included_tokens": 1000000, "rollover_cap_tokens": 500000}],
    }
    created = post(api, "/api/staff/plans/", plan)
    assert created.status_code == 201, created.json()
    assert (created.json()["fee"], created.json()["fee_nano"]) == ("20.00", 20_000_000_000)
    assert post(api, "/api/staff/plans/", plan | {"slug": "pro2", "fee": "abc"}).status_code == 400
    assert post(api, "/api/staff/plans/", plan | {"slug": "pro3", "fee": "-5"}).status_code == 400
    unknown = post(
        api, "/api/staff/plans/", plan | {"slug": "pro4", "allowances": [{"model": "x", "included_tokens": 1}]}
    )
    assert unknown.status_code == 404
    assert not Plan.objects.filter(slug="pro4").exists()
    assert post(api, "/api/staff/plans/", plan | {"slug": "team", "fee": "40.00"}).status_code == 201
    subscribed = post(api, "/api/staff/subscriptions/", {"organization": org_a.pk, "plan": "pro"})
    assert subscribed.status_code == 201, subscribed.json()
    subscription = subscribed.json()
    assert [p["fee"] for p in subscription["periods"]] == ["20.00"]
    assert post(api, "/api/staff/plans/pro/", {"fee": "1.00"}, method="patch").status_code == 409
    assert post(api, "/api/staff/plans/pro/", {"name": "Pro (2026)"}, method="patch").status_code == 200
    assert post(api, "/api/staff/subscriptions/", {"organization": org_a.pk, "plan": "team"}).status_code == 409
    assert post(api, "/api/staff/subscriptions/", {"organization": 10**12, "plan": "team"}).status_code == 404
    changed = post(api, f"/api/staff/subscriptions/{subscription['id']}/change/", {"plan": "team"})
    assert changed.status_code == 200 and changed.json()["plan"] == "team"
    assert [p["kind"] for p in changed.json()["periods"]] == ["start", "change"]
    cancelled = post(api, f"/api/staff/subscriptions/{subscription['id']}/cancel/", {"reason": "asked to"})
    assert cancelled.json()["cancel_at_period_end"] is True
    assert post(api, f"/api/staff/subscriptions/{subscription['id']}/change/", {"plan": "nope"}).status_code == 404
    assert Subscription.objects.count() == 1


def test_commitment_offers_and_purchases(api, org_a):
    offer = {
        "name": "gpt-4o 100M",
        "model": "gpt-4o",
        "committed_tokens_per_month": 100000000,
        "term_months": 3,
        "discount_bps": 2000,
        "payment": "upfront",
        "blended_price": "4.375",
    }
    created = post(api, "/api/staff/commitment-offers/", offer)
    assert created.status_code == 201, created.json()
    # 100M x $4.375/M x 80 % = $350.00 a month.
    assert (created.json()["monthly_fee"], created.json()["monthly_tokens"]) == ("350.00", 100_000_000)
    assert post(api, "/api/staff/commitment-offers/", offer | {"term_months": 6}).status_code == 400
    assert post(api, "/api/staff/commitment-offers/", offer | {"reserved_tokens_per_minute": 5}).status_code == 400
    assert post(api, "/api/staff/commitment-offers/", offer | {"model": "nope"}).status_code == 404
    broke = post(api, "/api/staff/commitments/", {"organization": org_a.pk, "offer": created.json()["id"]})
    assert (broke.status_code, error(broke)["code"]) == (402, "insufficient_credit")
    fund(org_a, "2000.00")
    bought = post(api, "/api/staff/commitments/", {"organization": org_a.pk, "offer": created.json()["id"]})
    assert bought.status_code == 201 and bought.json()["total_fee"] == "1050.00"
    assert post(api, "/api/staff/commitments/", {"organization": org_a.pk, "offer": 10**9}).status_code == 404
    listed = api.get(f"/api/staff/commitments/?organization={org_a.pk}").json()["data"]
    assert [c["id"] for c in listed] == [bought.json()["id"]]


def test_overrides_are_recorded_with_who_and_why(api, org_a, staff):
    body = {
        "organization": org_a.pk,
        "model": "gpt-4o",
        "input_price": "2.00",
        "discount_bps": 500,
        "reason": "deal #7",
    }
    created = post(api, "/api/staff/overrides/", body)
    assert created.status_code == 201, created.json()
    assert (created.json()["created_by"], created.json()["reason"]) == (staff.email, "deal #7")
    assert post(api, "/api/staff/overrides/", body).status_code == 409  # overlaps
    assert post(api, "/api/staff/overrides/", body | {"reason": ""}).status_code == 400
    assert post(api, "/api/staff/overrides/", body | {"model": None, "group": "gpt-4o"}).status_code == 400
    assert post(api, "/api/staff/overrides/", body | {"organization": 10**12}).status_code == 404
    ended = post(api, f"/api/staff/overrides/{created.json()['id']}/end/", {"reason": "contract over"})
    assert ended.status_code == 200 and ended.json()["effective_until"]
    assert PriceOverride.objects.count() == 1
    audit = api.get(f"/api/staff/pricing/audit/?organization={org_a.pk}").json()["data"]
    assert [e["action"] for e in audit] == ["pricing.override.end", "pricing.override.create"]
    assert audit[1]["reason"] == "deal #7" and audit[1]["actor"] == staff.email


def test_preview_prices_usage_now_and_under_a_draft(api, org_a):
    body = {
        "organization": org_a.pk,
        "model": "gpt-4o",
        "usages": [
            {"input_tokens": 1000000, "output_tokens": 100000},
            {"input_tokens": 10, "service_tier": "priority"},
        ],
        "draft": {"input_price": "2.00"},
    }
    response = post(api, "/api/staff/pricing/preview/", body)
    assert response.status_code == 200, response.json()
    result = response.json()
    # Now: $2.50 + $1.00, plus 10 priority tokens at $2.50/M x 1.7 = 42,500 nano. Draft: $2.00 + $1.00 + 34,000.
    assert result["current_total_nano"] == 3_500_000_000 + 42_500
    assert result["draft_total_nano"] == 3_000_000_000 + 34_000
    assert result["difference_nano"] == -500_008_500
    assert result["current"]["price_version_id"] and result["draft"]["price_version_id"] is None
    assert result["usages"][0]["draft"]["lines"][0]["rate_micro_per_mtok"] == 2_000_000
    assert AuditEvent.objects.count() == 0  # nothing written


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"usages": [{"input_tokens": -1}]}, 400),
        ({"usages": [{"input_tokens": 5, "cached_input_tokens": 6}]}, 400),
        ({"usages": [{"input_tokens": 5, "service_tier": "turbo"}]}, 400),
        ({"usages": [{"input_tokens": 10**20}]}, 400),
        ({"window": {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}}, 400),  # both
        ({"model": "nope"}, 404),
        ({"organization": 10**12}, 404),
        ({"draft": {"input_price": "-1"}}, 400),
        ({"draft": {"input_price": "1"}, "price_version": 1}, 400),
        ({"price_version": 10**9}, 404),
    ],
)
def test_bad_previews(api, org_a, changes, status):
    body = {"organization": org_a.pk, "model": "gpt-4o", "usages": [{"input_tokens": 5}]} | changes
    response = post(api, "/api/staff/pricing/preview/", body)
    assert response.status_code == status, response.json()
    assert error(response)["message"]


def test_preview_of_recorded_usage_window(api, org_a):
    from billing.pricing.models import AIModel
    from billing.usage.models import UsageRecord

    UsageRecord.objects.create(
        organization=org_a,
        request_id="w1",
        endpoint="chat",
        model=AIModel.objects.get(slug="gpt-4o"),
        status="ok",
        input_tokens=1_000_000,
        charge_nano=2_500_000_000,
        created_at=datetime(2026, 2, 10, tzinfo=UTC),
    )
    body = {
        "organization": org_a.pk,
        "model": "gpt-4o",
        "window": {"since": "2026-02-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        "draft": {"input_price": "3.00"},
    }
    result = post(api, "/api/staff/pricing/preview/", body).json()
    assert (result["recorded_total"], result["current_total"], result["draft_total"]) == ("2.50", "2.50", "3.00")


def test_schema_lists_the_staff_pricing_endpoints(api):
    schema = api.get("/api/staff/schema/?format=json").json()
    for path in ("/api/staff/price-versions/", "/api/staff/plans/", "/api/staff/pricing/preview/"):
        assert path in schema["paths"]
