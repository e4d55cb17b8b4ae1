"""The plans page: every member sees offers and the current plan; owners and billing admins preview and confirm;
a bad, altered, stale or foreign confirmation is a 4xx with a message and writes nothing."""

import re
import uuid

import pytest
from django.core import signing
from django.test import Client

from accounts.models import AuditEvent, Role
from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.pricing import services
from billing.pricing.models import Commitment, CommitmentOffer, Subscription, SubscriptionPeriod
from billing.pricing.services import AllowanceSpec
from core.money import money_display
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.web.conftest import client_for

USD = 10**9


@pytest.fixture
def offered(book) -> CommitmentOffer:
    services.plan_create(
        slug="starter",
        name="Starter",
        fee_nano=31 * USD,
        allowances=[AllowanceSpec(included_tokens=1_000, rollover_cap_tokens=500, model="gpt-4o")],
    )
    services.plan_create(slug="scale", name="Scale", fee_nano=62 * USD, usage_discount_bps=2_000)
    services.plan_create(slug="hidden", name="Hidden", fee_nano=USD, is_active=False)
    services.commitment_offer_create(
        name="Retired offer",
        model="gpt-4o",
        committed_tokens_per_month=1_000,
        term_months=1,
        discount_bps=100,
        payment="upfront",
        blended_price_micro_per_mtok=1_000,
        is_active=False,
    )
    return services.commitment_offer_create(
        name="Llama 70B, 10M a month",
        model="llama-3.1-70b-instruct",
        committed_tokens_per_month=10_000_000,
        term_months=3,
        discount_bps=2_500,
        payment="monthly",
        blended_price_micro_per_mtok=880_000,
    )


def _fund(org, dollars: int) -> None:
    ledger.grant_create(
        organization_id=org.pk, kind="paid", amount_nano=dollars * USD, idempotency_key=f"f-{uuid.uuid4()}", actor="t"
    )


def _available(org) -> int:
    return ledger_selectors.wallet_balance(organization_id=org.pk).available_nano


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field"
    return found.group(1)


def _preview(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content
    return response.content.decode()


def test_every_member_sees_published_offers_but_only_managers_can_act(offered, as_alice, as_bob, as_vera, as_bill):
    for client, acts in ((as_alice, True), (as_bill, True), (as_bob, False), (as_vera, False)):
        page = client.get("/billing/plans/")
        assert page.status_code == 200
        html = page.content.decode()
        assert "Starter" in html and "Scale" in html and "Llama 70B, 10M a month" in html
        assert "Hidden" not in html and "Retired offer" not in html
        assert "1,000 tokens of model gpt-4o included" in html and "up to 500 unused roll over" in html
        assert "20% off usage" in html and "use-or-lose" in html
        assert ('data-testid="plan-choose"' in html) is acts
        assert ('data-testid="offer-choose"' in html) is acts
    for client in (as_bob, as_vera):
        assert client.get("/billing/plans/scale/preview/").status_code == 403
        assert client.post("/billing/plans/confirm/", {"quote": "x"}).status_code == 403
        assert client.get(f"/billing/commitments/{offered.pk}/preview/").status_code == 403
        assert client.post("/billing/commitments/confirm/", {"quote": "x"}).status_code == 403


def test_subscribe_then_upgrade_charges_what_the_preview_showed(offered, org_a, as_alice, alice):
    _fund(org_a, 100)
    html = _preview(as_alice, "/billing/plans/starter/preview/")
    assert "$31.00" in html
    response = as_alice.post("/billing/plans/confirm/", {"quote": _field(html, "quote")})
    assert response.status_code == 302 and response["Location"] == "/billing/plans/"
    assert _available(org_a) == 69 * USD
    page = as_alice.get("/billing/plans/").content.decode()
    assert 'data-testid="current-plan">Starter' in page and 'data-testid="next-renewal-fee">$31.00' in page

    html = _preview(as_alice, "/billing/plans/scale/preview/")
    quote = signing.loads(_field(html, "quote"), salt="web.billing.plans.plan-quote")
    net = quote["charge_nano"] - quote["credit_nano"]
    shown = re.search(r'data-testid="preview-net">([^<]+)<', html)
    assert shown is not None and shown.group(1) == money_display(net, "USD")
    before = _available(org_a)
    assert as_alice.post("/billing/plans/confirm/", {"quote": _field(html, "quote")}).status_code == 302
    assert before - _available(org_a) == net
    change = SubscriptionPeriod.objects.get(kind="change")
    assert (change.fee_nano, change.credit_nano) == (quote["charge_nano"], quote["credit_nano"])
    assert AuditEvent.objects.filter(action="pricing.subscription.change", actor=alice).exists()


def test_a_stale_form_after_a_plan_change_is_refused_and_writes_nothing(offered, org_a, as_alice, as_bill):
    _fund(org_a, 100)
    html = _preview(as_alice, "/billing/plans/starter/preview/")
    as_alice.post("/billing/plans/confirm/", {"quote": _field(html, "quote")})
    stale = _field(_preview(as_alice, "/billing/plans/scale/preview/"), "quote")
    # Meanwhile the billing admin changes the plan from their own preview.
    fresh = _field(_preview(as_bill, "/billing/plans/scale/preview/"), "quote")
    assert as_bill.post("/billing/plans/confirm/", {"quote": fresh}).status_code == 302
    periods, left = SubscriptionPeriod.objects.count(), _available(org_a)
    response = as_alice.post("/billing/plans/confirm/", {"quote": stale})
    assert response.status_code == 409
    assert "Your plan changed since this preview" in response.content.decode()
    assert (SubscriptionPeriod.objects.count(), _available(org_a)) == (periods, left)


@pytest.mark.parametrize(
    "body",
    [{}, {"quote": ""}, {"quote": "not-a-token"}, {"quote": signing.dumps({"plan_slug": "scale"})}, {"quote": ["a"]}],
)
def test_bad_plan_confirmations_are_400(offered, org_a, as_alice, body):
    _fund(org_a, 100)
    response = as_alice.post("/billing/plans/confirm/", body)
    assert response.status_code == 400
    assert "preview again" in response.content.decode()
    assert not Subscription.objects.exists() and _available(org_a) == 100 * USD


def test_an_altered_preview_is_400(offered, org_a, as_alice):
    _fund(org_a, 100)
    token = _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")
    data = signing.loads(token, salt="web.billing.plans.plan-quote")
    forged = signing.dumps({**data, "charge_nano": 1}, salt="another-salt")
    assert as_alice.post("/billing/plans/confirm/", {"quote": forged}).status_code == 400
    assert as_alice.post("/billing/plans/confirm/", {"quote": token[:-2] + "xx"}).status_code == 400
    assert not Subscription.objects.exists()


def test_another_organizations_preview_is_refused(offered, org_a, org_b, alice, as_alice):
    _fund(org_a, 100)
    _fund(org_b, 100)
    MembershipFactory(user=alice, organization=org_b, role=Role.OWNER)
    token = _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")  # for org A (her first)
    as_alice.post("/organization/switch/", {"organization_id": org_b.pk})
    response = as_alice.post("/billing/plans/confirm/", {"quote": token})
    assert response.status_code == 400 and "another organization" in response.content.decode()
    assert not Subscription.objects.exists()


def test_unknown_retired_and_current_plans_do_not_preview(offered, org_a, as_alice):
    assert as_alice.get("/billing/plans/nope/preview/").status_code == 404
    retired = as_alice.get("/billing/plans/hidden/preview/")
    assert retired.status_code == 409 and "no longer offered" in retired.content.decode()
    _fund(org_a, 100)
    as_alice.post(
        "/billing/plans/confirm/", {"quote": _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")}
    )
    assert as_alice.get("/billing/plans/starter/preview/").status_code == 409
    assert as_alice.get("/billing/plans/confirm/").status_code == 405


def test_short_credit_is_402_and_writes_nothing(offered, org_a, as_alice):
    _fund(org_a, 10)
    token = _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")
    response = as_alice.post("/billing/plans/confirm/", {"quote": token})
    assert response.status_code == 402
    assert not Subscription.objects.exists() and _available(org_a) == 10 * USD


def test_commitment_preview_and_purchase_once_per_form(offered, org_a, as_alice):
    _fund(org_a, 50)
    html = _preview(as_alice, f"/billing/commitments/{offered.pk}/preview/")
    assert "25%" in html and "$6.60" in html and "$19.80" in html and "Use-or-lose" in html
    form = {"quote": _field(html, "quote"), "idempotency_key": _field(html, "idempotency_key")}
    assert as_alice.post("/billing/commitments/confirm/", form).status_code == 302
    again = as_alice.post("/billing/commitments/confirm/", form, follow=True)
    assert "already bought" in again.content.decode()
    assert Commitment.objects.filter(organization=org_a).count() == 1
    assert _available(org_a) == 50 * USD - 6_600_000_000
    page = as_alice.get("/billing/plans/").content.decode()
    assert 'data-testid="commitment-drawdown">0 (0%)' in page


def test_commitment_confirmations_with_bad_input(offered, org_a, org_b, as_alice, charlie):
    _fund(org_a, 50)
    html = _preview(as_alice, f"/billing/commitments/{offered.pk}/preview/")
    quote, key = _field(html, "quote"), _field(html, "idempotency_key")
    for body, status in (
        ({"quote": quote}, 400),
        ({"quote": quote, "idempotency_key": "not-a-uuid"}, 400),
        ({"quote": "forged", "idempotency_key": key}, 400),
        ({"idempotency_key": key}, 400),
    ):
        assert as_alice.post("/billing/commitments/confirm/", body).status_code == status
    for raw in ("abc", "-1", "999999", "1.5"):
        assert as_alice.get(f"/billing/commitments/{raw}/preview/").status_code == 404
    services.commitment_offer_update(offer_id=offered.pk, discount_bps=1_000)
    stale = as_alice.post("/billing/commitments/confirm/", {"quote": quote, "idempotency_key": key})
    assert stale.status_code == 409 and "terms changed" in stale.content.decode()
    assert not Commitment.objects.exists() and _available(org_a) == 50 * USD
    # The same form in another organization buys for that one only, under its own key.
    _fund(org_b, 50)
    services.commitment_offer_update(offer_id=offered.pk, discount_bps=2_500)
    other = client_for(charlie)
    assert other.post("/billing/commitments/confirm/", {"quote": quote, "idempotency_key": key}).status_code == 302
    assert list(Commitment.objects.values_list("organization_id", flat=True)) == [org_b.pk]


def test_a_user_without_membership_is_sent_to_create_one(offered):
    client = client_for(UserFactory(username="nobody@example.com"))
    assert client.get("/billing/plans/").status_code == 302


def test_the_dashboard_summarizes_the_plan(offered, org_a, as_alice, as_vera):
    assert 'data-testid="plan-summary"' not in as_alice.get("/").content.decode()
    _fund(org_a, 100)
    as_alice.post(
        "/billing/plans/confirm/", {"quote": _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")}
    )
    html = as_vera.get("/").content.decode()
    assert 'data-testid="plan-summary"' in html
    assert "Starter" in html and "included tokens of model gpt-4o left" in html and "for $31.00" in html


def test_a_past_due_subscription_cannot_change_plan_until_paid(offered, org_a, as_alice):
    _fund(org_a, 31)
    as_alice.post(
        "/billing/plans/confirm/", {"quote": _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")}
    )
    Subscription.objects.update(status="past_due")
    html = as_alice.get("/billing/plans/").content.decode()
    assert "Past due" in html and 'data-testid="plan-choose"' not in html
    response = as_alice.get("/billing/plans/scale/preview/")
    assert response.status_code == 409 and "renewal fee is unpaid" in response.content.decode()


def test_the_page_costs_the_same_queries_however_many_plans_and_commitments(
    offered, org_a, as_alice, django_assert_max_num_queries
):
    _fund(org_a, 500)
    as_alice.post(
        "/billing/plans/confirm/", {"quote": _field(_preview(as_alice, "/billing/plans/starter/preview/"), "quote")}
    )
    services.commitment_purchase(organization_id=org_a.pk, offer_id=offered.pk)
    with django_assert_max_num_queries(40) as few:
        assert as_alice.get("/billing/plans/").status_code == 200
    for n in range(3):
        services.plan_create(
            slug=f"more-{n}",
            name=f"More {n}",
            fee_nano=USD,
            allowances=[AllowanceSpec(included_tokens=1, model="gpt-4o")],
        )
        services.commitment_purchase(organization_id=org_a.pk, offer_id=offered.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = as_alice.get("/billing/plans/")
    assert page.content.decode().count('data-testid="commitment-row"') == 4
