"""The staff pricing console (server-rendered pages), driven with Django's test client."""

import re

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.pricing.models import CommitmentOffer, Plan, PriceOverride, PriceVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, staff, book):
    client.force_login(staff)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/staff/pricing/",
        "/staff/pricing/models/gpt-4o/",
        "/staff/pricing/preview/",
        "/staff/pricing/plans/",
        "/staff/pricing/offers/",
        "/staff/pricing/overrides/",
        "/staff/pricing/audit/",
    ],
)
def test_pages_are_for_staff_only(client, alice, book, url):
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 302 and "login" in response.url


def test_models_page_lists_current_and_scheduled_prices(console, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        page = console.get("/staff/pricing/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-model="gpt-4o"' in html and "$2.50" in html and "$10.00" in html


def test_schedule_and_cancel_a_version_from_the_console(console, staff):
    when = (timezone.now() + timezone.timedelta(days=7)).strftime("%Y-%m-%d %H:%M")
    fields = {"input_price": "2.00", "output_price": "8.00", "start": "at", "effective_from": when, "note": "cut"}
    confirm = console.post("/staff/pricing/models/gpt-4o/", fields)
    assert confirm.status_code == 200 and not PriceVersion.objects.filter(note="cut").exists()
    replaces = re.search(r'name="confirmed_replaces" value="(\d+)"', confirm.content.decode()).group(1)
    response = console.post("/staff/pricing/models/gpt-4o/publish/", {**fields, "confirmed_replaces": replaces})
    assert response.status_code == 302
    version = PriceVersion.objects.get(note="cut")
    assert (version.input_price_micro_per_mtok, version.created_by) == (2_000_000, staff)
    listing = console.get("/staff/pricing/").content.decode()
    assert "$2.00 / $8.00 from" in listing
    page = console.get("/staff/pricing/models/gpt-4o/", follow=True).content.decode()
    assert f'data-testid="cancel-{version.pk}"' in page
    console.post(f"/staff/pricing/versions/{version.pk}/cancel/", {"reason": "no"})
    version.refresh_from_db()
    assert version.cancelled_at is not None
    assert AuditEvent.objects.filter(action="pricing.price_version.cancel", actor=staff).exists()


def test_bad_prices_are_shown_back_and_nothing_saved(console):
    before = PriceVersion.objects.count()
    response = console.post("/staff/pricing/models/gpt-4o/", {"input_price": "-3", "output_price": "x"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "cannot be negative" in html and "not a decimal number" in html
    past = console.post(
        "/staff/pricing/models/gpt-4o/",
        {"input_price": "1", "output_price": "1", "effective_from": "2020-01-01 00:00"},
    )
    assert past.status_code == 400 and "never retroactively" in past.content.decode()
    assert PriceVersion.objects.count() == before


def test_preview_a_draft_price_for_an_organization(console, org_a):
    response = console.get(
        "/staff/pricing/preview/",
        {
            "organization": org_a.pk,
            "model": "gpt-4o",
            "input_tokens": 1_000_000,
            "cached_input_tokens": 0,
            "output_tokens": 0,
            "service_tier": "default",
            "draft_input_price": "2.00",
        },
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="current-total">$2.50<' in html
    assert 'data-testid="draft-total">$2.00<' in html


def test_plans_offers_and_overrides_from_the_console(console, org_a, staff):
    response = console.post(
        "/staff/pricing/plans/",
        {
            "slug": "pro",
            "name": "Pro",
            "interval": "month",
            "fee": "20.00",
            "usage_discount_bps": 1000,
            "allowances": "model:gpt-4o 1000000 500000\ngroup:open-weight 5000000",
        },
    )
    assert response.status_code == 302
    plan = Plan.objects.get(slug="pro")
    assert sorted(a.scope_key for a in plan.allowances.all()) == ["group:open-weight", "model:gpt-4o"]
    console.post("/staff/pricing/plans/pro/offer/", {"offer": "no"})
    assert Plan.objects.get(slug="pro").is_active is False
    assert "Offer again" in console.get("/staff/pricing/plans/").content.decode()
    bad = console.post(
        "/staff/pricing/plans/",
        {"slug": "x", "name": "X", "interval": "month", "fee": "1", "allowances": "gpt-4o lots"},
    )
    assert "Line 1" in bad.content.decode() and not Plan.objects.filter(slug="x").exists()
    offer = console.post(
        "/staff/pricing/offers/",
        {
            "name": "gpt-4o 100M",
            "model": "gpt-4o",
            "committed_tokens_per_month": 100_000_000,
            "term_months": 3,
            "discount_bps": 2000,
            "payment": "upfront",
            "blended_price": "4.375",
        },
    )
    assert offer.status_code == 302 and CommitmentOffer.objects.count() == 1
    assert "35000000000" in console.get("/staff/pricing/offers/").content.decode()  # $350.00 a month
    offer_id = CommitmentOffer.objects.get().pk
    console.post(f"/staff/pricing/offers/{offer_id}/offer/", {"offer": "no"})
    assert CommitmentOffer.objects.get().is_active is False
    override = console.post(
        "/staff/pricing/overrides/",
        {"organization": org_a.pk, "model": "gpt-4o", "discount_bps": 1500, "reason": "contract #9"},
    )
    assert override.status_code == 302
    created = PriceOverride.objects.get()
    assert (created.discount_bps, created.created_by, created.reason) == (1500, staff, "contract #9")
    no_reason = console.post(
        "/staff/pricing/overrides/", {"organization": org_a.pk, "group": "gpt-4o", "discount_bps": 5}
    )
    assert no_reason.status_code == 400 and PriceOverride.objects.count() == 1
    console.post(f"/staff/pricing/overrides/{created.pk}/end/", {"reason": "ended"})
    created.refresh_from_db()
    assert created.effective_until is not None
    audit = console.get("/staff/pricing/audit/").content.decode()
    for action in (
        "pricing.plan.create",
        "pricing.commitment_offer.create",
        "pricing.override.create",
        "pricing.override.end",
    ):
        assert action in audit


@pytest.mark.parametrize(
    ("url", "method", "data", "message"),
    [
        ("/staff/pricing/preview/", "get", {"model": "gpt-4o", "input_tokens": "-1"}, "Enter a whole number"),
        ("/staff/pricing/plans/", "post", {"slug": "x", "name": "X", "fee": "-5"}, "must be greater than zero"),
        ("/staff/pricing/offers/", "post", {"name": "O", "term_months": "7"}, "7 is not one of the available"),
        ("/staff/pricing/overrides/", "post", {"organization": "999999"}, "999999 is not one of the available"),
    ],
)
def test_a_form_sent_back_with_errors_is_a_400_like_the_customer_pages(console, url, method, data, message):
    response = getattr(console, method)(url, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert console.get(url).status_code == 200  # the empty form
