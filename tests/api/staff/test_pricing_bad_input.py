"""Input a person can mistype, or a client can send by accident, gets a 4xx that says what is wrong, never a 500
and never a half-written change: digits other than ASCII 0-9 (Python's int() and Decimal() read Arabic-Indic,
full-width and other digits), NUL characters, and dates whose arithmetic leaves the calendar."""

import json

import pytest

from billing.pricing import services
from billing.pricing.models import Commitment, CommitmentOffer, Plan, PriceOverride, PriceVersion, Subscription
from tests.accounts.factories import UserFactory
from tests.billing.pricing.conftest import fund

pytestmark = pytest.mark.django_db

ARABIC_3 = "\u0663"  # Arabic-Indic three
FULLWIDTH_3 = "\uff13"  # full-width three
SUPERSCRIPT_2 = "\u00b2"  # superscript two: str.isdigit() says yes, int() says no
NUL = "\x00"


@pytest.fixture
def world(client, org_a):
    services.price_book_seed()
    staff = UserFactory(username="sam@staff.example.com", is_staff=True)
    client.force_login(staff)
    fund(org_a, "5000.00")
    services.plan_create(slug="starter", name="Starter", fee_nano=10**9)
    offer = services.commitment_offer_create(
        name="gpt-4o 1M",
        model="gpt-4o",
        committed_tokens_per_month=1_000_000,
        term_months=3,
        discount_bps=0,
        payment="monthly",
        blended_price_micro_per_mtok=1_000_000,
    )
    return {"client": client, "org": org_a.pk, "offer": offer.pk}


def _counts():
    return (
        Plan.objects.count(),
        CommitmentOffer.objects.count(),
        Commitment.objects.count(),
        PriceOverride.objects.count(),
        PriceVersion.objects.count(),
        Subscription.objects.count(),
    )


def _plan(**over):
    return {"slug": "pro", "name": "Pro", "fee": "20.00", "interval": "month"} | over


def _offer(**over):
    return {
        "name": "n",
        "model": "gpt-4o",
        "committed_tokens_per_month": 1000,
        "term_months": 3,
        "discount_bps": 0,
        "payment": "upfront",
        "blended_price": "1.00",
    } | over


def _version(**over):
    return {"model": "gpt-4o", "input_price": "1.00", "output_price": "2.00"} | over


def _override(org, **over):
    return {"organization": org, "model": "gpt-4o", "discount_bps": 100, "reason": "deal"} | over


def _in_script(number: int, zero: str) -> str:
    """`number` written in the digits of the script whose zero is `zero`."""
    return "".join(chr(ord(zero) + int(d)) for d in str(number))


ARABIC_ZERO, FULLWIDTH_ZERO = "\u0660", "\uff10"
PLANS, OFFERS, BUY, VERSIONS, OVERRIDES = (
    "/api/staff/plans/",
    "/api/staff/commitment-offers/",
    "/api/staff/commitments/",
    "/api/staff/price-versions/",
    "/api/staff/overrides/",
)
PREVIEW = "/api/staff/pricing/preview/"
END_OF_9999 = "9999-12-31T23:59:59Z"
YEAR_10000_IN_UTC = "9999-12-31T23:00:00-05:00"


def _buy(w, **over):
    return {"organization": w["org"], "offer": w["offer"]} | over


def _preview(w, **over):
    return {"organization": w["org"], "model": "gpt-4o"} | over


# (name, method, url, body from the world, or None). Each must be refused with a 400.
API_CASES = [
    ("plan fee in Arabic-Indic digits", "post", PLANS, lambda w: _plan(fee=ARABIC_3)),
    ("plan fee in full-width digits", "post", PLANS, lambda w: _plan(fee=f"{FULLWIDTH_3}.00")),
    ("plan name with NUL", "post", PLANS, lambda w: _plan(name=f"Pro{NUL}")),
    ("plan rate limit in Arabic-Indic digits", "post", PLANS, lambda w: _plan(requests_per_minute=ARABIC_3)),
    (
        "included tokens in full-width digits",
        "post",
        PLANS,
        lambda w: _plan(allowances=[{"model": "gpt-4o", "included_tokens": FULLWIDTH_3 * 4}]),
    ),
    ("plan name edit with NUL", "patch", f"{PLANS}starter/", lambda w: {"name": NUL}),
    ("offer tokens in Arabic-Indic digits", "post", OFFERS, lambda w: _offer(committed_tokens_per_month=ARABIC_3 * 4)),
    ("offer price in full-width digits", "post", OFFERS, lambda w: _offer(blended_price=FULLWIDTH_3)),
    ("offer name with NUL", "post", OFFERS, lambda w: _offer(name=f"a{NUL}b")),
    ("offer discount in Arabic-Indic digits", "post", OFFERS, lambda w: _offer(discount_bps=ARABIC_3)),
    (
        "purchase organization in Arabic-Indic digits",
        "post",
        BUY,
        lambda w: _buy(w, organization=_in_script(w["org"], ARABIC_ZERO)),
    ),
    (
        "purchase offer in full-width digits",
        "post",
        BUY,
        lambda w: _buy(w, offer=_in_script(w["offer"], FULLWIDTH_ZERO)),
    ),
    ("purchase starting in year 10000", "post", BUY, lambda w: _buy(w, starts_at="10000-01-01T00:00:00Z")),
    ("purchase starting in year 10000 in UTC", "post", BUY, lambda w: _buy(w, starts_at=YEAR_10000_IN_UTC)),
    ("purchase whose term ends after year 9999", "post", BUY, lambda w: _buy(w, starts_at="9999-11-01T00:00:00Z")),
    ("purchase key with NUL", "post", BUY, lambda w: _buy(w, idempotency_key=f"k{NUL}")),
    (
        "subscription organization in Arabic-Indic digits",
        "post",
        "/api/staff/subscriptions/",
        lambda w: {"organization": ARABIC_3, "plan": "starter"},
    ),
    ("version price in Arabic-Indic digits", "post", VERSIONS, lambda w: _version(input_price=ARABIC_3)),
    ("version note with NUL", "post", VERSIONS, lambda w: _version(note=NUL)),
    ("version effective in year 10000", "post", VERSIONS, lambda w: _version(effective_from="10000-01-01T00:00:00Z")),
    ("version effective in year 10000 in UTC", "post", VERSIONS, lambda w: _version(effective_from=YEAR_10000_IN_UTC)),
    ("version effective at the end of year 9999", "post", VERSIONS, lambda w: _version(effective_from=END_OF_9999)),
    (
        "override discount in full-width digits",
        "post",
        OVERRIDES,
        lambda w: _override(w["org"], discount_bps=FULLWIDTH_3),
    ),
    ("override reason with NUL", "post", OVERRIDES, lambda w: _override(w["org"], reason=NUL)),
    (
        "override until year 10000 in UTC",
        "post",
        OVERRIDES,
        lambda w: _override(w["org"], effective_until=YEAR_10000_IN_UTC),
    ),
    (
        "override from the end of year 9999",
        "post",
        OVERRIDES,
        lambda w: _override(w["org"], effective_from=END_OF_9999),
    ),
    (
        "preview tokens in Arabic-Indic digits",
        "post",
        PREVIEW,
        lambda w: _preview(w, usages=[{"input_tokens": ARABIC_3}]),
    ),
    ("preview at year 10000 in UTC", "post", PREVIEW, lambda w: _preview(w, at=YEAR_10000_IN_UTC)),
    ("preview at the end of year 9999", "post", PREVIEW, lambda w: _preview(w, at=END_OF_9999)),
    ("list filter in superscript digits", "get", f"{BUY}?organization={SUPERSCRIPT_2}", None),
    ("list filter in Arabic-Indic digits", "get", f"/api/staff/subscriptions/?organization={ARABIC_3}", None),
    ("list filter in full-width digits", "get", f"{OVERRIDES}?organization={FULLWIDTH_3}", None),
    ("audit log filter in superscript digits", "get", f"/api/staff/pricing/audit/?organization={SUPERSCRIPT_2}", None),
    ("audit log limit in superscript digits", "get", f"/api/staff/pricing/audit/?limit={SUPERSCRIPT_2}", None),
    ("audit log limit in Arabic-Indic digits", "get", f"/api/staff/pricing/audit/?limit={ARABIC_3}", None),
]


@pytest.mark.parametrize(("method", "url", "body"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_staff_api_refuses_with_a_400(world, method, url, body):
    client = world["client"]
    before = _counts()
    if body is None:
        response = getattr(client, method)(url)
    else:
        response = getattr(client, method)(url, json.dumps(body(world)), content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    assert response.json()["error"]["message"]
    assert _counts() == before


# Console forms: a refused form is shown again with what is wrong (and nothing is written).
def _plan_form(**over):
    return {"slug": "pro", "name": "Pro", "interval": "month", "fee": "1.00", "usage_discount_bps": "0"} | over


def _offer_form(**over):
    return {
        "name": "n",
        "model": "gpt-4o",
        "committed_tokens_per_month": "1000",
        "term_months": "3",
        "discount_bps": "0",
        "payment": "upfront",
        "blended_price": "1.00",
    } | over


def _override_form(**over):
    return {"organization": "{org}", "model": "gpt-4o", "discount_bps": "1", "reason": "r"} | over


def _version_form(**over):
    return {"input_price": "1.00", "output_price": "2.00"} | over


CONSOLE_PLANS, CONSOLE_OFFERS = "/staff/pricing/plans/", "/staff/pricing/offers/"
CONSOLE_OVERRIDES, CONSOLE_VERSIONS = "/staff/pricing/overrides/", "/staff/pricing/models/gpt-4o/"
CONSOLE_CASES = [
    ("plan fee in Arabic-Indic digits", CONSOLE_PLANS, _plan_form(fee=ARABIC_3)),
    ("plan discount in full-width digits", CONSOLE_PLANS, _plan_form(usage_discount_bps=FULLWIDTH_3)),
    ("plan allowance in superscript digits", CONSOLE_PLANS, _plan_form(allowances=f"model:gpt-4o 1{SUPERSCRIPT_2}")),
    ("plan allowance in Arabic-Indic digits", CONSOLE_PLANS, _plan_form(allowances=f"model:gpt-4o {ARABIC_3 * 4}")),
    ("plan name with NUL", CONSOLE_PLANS, _plan_form(name=f"P{NUL}")),
    ("offer tokens in full-width digits", CONSOLE_OFFERS, _offer_form(committed_tokens_per_month=FULLWIDTH_3 * 4)),
    ("offer price in Arabic-Indic digits", CONSOLE_OFFERS, _offer_form(blended_price=ARABIC_3)),
    ("override until year 10000", CONSOLE_OVERRIDES, _override_form(effective_until="10000-01-01 00:00")),
    ("override until the end of year 9999", CONSOLE_OVERRIDES, _override_form(effective_until="9999-12-31 23:59")),
    ("override discount in Arabic-Indic digits", CONSOLE_OVERRIDES, _override_form(discount_bps=ARABIC_3)),
    ("version price in full-width digits", CONSOLE_VERSIONS, _version_form(input_price=FULLWIDTH_3)),
    ("version effective at the end of year 9999", CONSOLE_VERSIONS, _version_form(effective_from="9999-12-31 23:59")),
    ("version note with NUL", CONSOLE_VERSIONS, _version_form(note=NUL)),
]


@pytest.mark.parametrize(("url", "form"), [c[1:] for c in CONSOLE_CASES], ids=[c[0] for c in CONSOLE_CASES])
def test_console_forms_show_the_mistake(world, url, form):
    client = world["client"]
    before = _counts()
    response = client.post(url, {k: v.replace("{org}", str(world["org"])) for k, v in form.items()})
    assert response.status_code == 400, response.content[:300]  # the form again, with its errors
    assert "errorlist" in response.content.decode()
    assert _counts() == before


PREVIEW_CASES = [
    ("tokens in Arabic-Indic digits", {"input_tokens": ARABIC_3}),
    ("tokens in full-width digits", {"output_tokens": FULLWIDTH_3}),
    ("organization in Arabic-Indic digits", {"organization": ARABIC_3}),
]


@pytest.mark.parametrize("params", [c[1] for c in PREVIEW_CASES], ids=[c[0] for c in PREVIEW_CASES])
def test_console_preview_shows_the_mistake(world, params):
    query = {
        "organization": str(world["org"]),
        "model": "gpt-4o",
        "input_tokens": "10",
        "cached_input_tokens": "0",
        "output_tokens": "10",
        "service_tier": "default",
    } | params
    response = world["client"].get("/staff/pricing/preview/", query)
    assert response.status_code == 400
    assert "errorlist" in response.content.decode()
