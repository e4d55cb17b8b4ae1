"""Publishing a price from the staff console in two steps (a form, then a confirmation showing the change), and
the audit log page (what changed, who, when, why; filtered by organization, model and actor; paginated)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing.pricing import services
from billing.pricing.models import PriceVersion
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

MODEL = "/staff/pricing/models/gpt-4o-mini/"
PUBLISH = "/staff/pricing/models/gpt-4o-mini/publish/"


@pytest.fixture
def console(client, staff, book):
    client.force_login(staff)
    return client


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of the confirmation page's publish form."""
    form = re.search(r'data-testid="publish-form".*?</form>', html, re.S)
    assert form, "no publish form on the page"
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form.group(0)))


def review(console, **fields: str):
    data = {"input_price": "0.12", "output_price": "0.48", "note": "spring price cut"} | fields
    return console.post(MODEL, data)


def counts() -> tuple[int, int]:
    return PriceVersion.objects.count(), AuditEvent.objects.count()


def test_the_first_step_writes_nothing_and_shows_current_and_new_prices_side_by_side(console):
    before = counts()
    current = PriceVersion.objects.filter(model__slug="gpt-4o-mini").latest("effective_from")
    page = review(console, start="now")
    html = page.content.decode()
    assert page.status_code == 200 and counts() == before
    assert 'data-testid="confirm-table"' in html and f"version #{current.pk}" in html
    row = re.search(r'<tr data-kind="Input">(.*?)</tr>', html, re.S).group(1)
    assert "$0.15" in row and "$0.12" in row and "-20.0%" in row
    output = re.search(r'<tr data-kind="Output">(.*?)</tr>', html, re.S).group(1)
    assert "$0.60" in output and "$0.48" in output
    assert "Takes effect <strong>now</strong>" in html and "spring price cut" in html
    assert hidden_fields(html)["confirmed_replaces"] == str(current.pk)


def test_publish_now_after_confirming(console, staff):
    html = review(console, start="now").content.decode()
    response = console.post(PUBLISH, hidden_fields(html))
    assert response.status_code == 302
    version = PriceVersion.objects.get(note="spring price cut")
    assert version.effective_from <= timezone.now() and version.created_by == staff
    event = AuditEvent.objects.get(action="pricing.price_version.create", target=f"PriceVersion:{version.pk}")
    assert event.reason == "spring price cut"
    assert event.changes["input_price_micro_per_mtok"] == {"before": 150_000, "after": 120_000}
    assert "take effect now" in console.get(MODEL).content.decode()


def test_a_reasoning_price_is_reviewed_and_published(console):
    html = review(console, start="now", reasoning_price="1.92").content.decode()
    row = re.search(r'<tr data-kind="Reasoning">(.*?)</tr>', html, re.S).group(1)
    assert "output price" in row and "$1.92" in row
    assert hidden_fields(html)["reasoning_price"] == "1.92"
    assert console.post(PUBLISH, hidden_fields(html)).status_code == 302
    assert PriceVersion.objects.get(note="spring price cut").reasoning_price_micro_per_mtok == 1_920_000
    # Left empty: no reasoning price of its own (the output price).
    html = review(console, start="now", note="again").content.decode()
    assert hidden_fields(html)["reasoning_price"] == ""
    assert console.post(PUBLISH, hidden_fields(html)).status_code == 302
    assert PriceVersion.objects.get(note="again").reasoning_price_micro_per_mtok is None


def test_publish_from_a_future_start(console):
    when = (timezone.now() + timedelta(days=14)).replace(second=0, microsecond=0)
    html = review(console, start="at", effective_from=f"{when:%Y-%m-%d %H:%M}").content.decode()
    assert f"{when:%Y-%m-%d %H:%M} UTC" in html
    assert PriceVersion.objects.filter(note="spring price cut").count() == 0
    response = console.post(PUBLISH, hidden_fields(html), follow=True)
    assert f"take effect from {when:%Y-%m-%d %H:%M} UTC" in response.content.decode()
    assert PriceVersion.objects.get(note="spring price cut").effective_from == when


def test_a_past_start_is_refused_with_a_clear_message(console):
    before = counts()
    page = review(console, start="at", effective_from="2020-01-01 00:00")
    html = page.content.decode()
    assert page.status_code == 400 and counts() == before
    assert "2020-01-01 00:00 UTC is in the past" in html and "never retroactively" in html
    # A later start that has passed by the time it is confirmed is refused the same way.
    soon = timezone.now() + timedelta(minutes=1)
    fields = hidden_fields(review(console, start="at", effective_from=f"{soon:%Y-%m-%d %H:%M:%S}").content.decode())
    fields["effective_from"] = f"{timezone.now() - timedelta(minutes=1):%Y-%m-%d %H:%M:%S}"
    late = console.post(PUBLISH, fields)
    assert late.status_code == 409 and "is in the past" in late.content.decode() and counts() == before


def test_a_later_start_needs_a_time_and_now_takes_none(console):
    page = review(console, start="at")
    assert page.status_code == 400 and "Give the start date and time in UTC, or choose Now." in page.content.decode()
    both = review(console, start="now", effective_from="2030-01-01 00:00")
    assert both.status_code == 400 and "You chose Now and gave a start time" in both.content.decode()


def test_an_empty_cached_price_is_pointed_out(console):
    html = review(console, start="now").content.decode()
    assert "left empty, so it is the input price" in html
    assert hidden_fields(html)["cached_input_price"] == ""
    given = review(console, start="now", cached_input_price="0.06").content.decode()
    assert "left empty" not in given and hidden_fields(given)["cached_input_price"] == "0.06"


def test_a_stale_confirmation_is_refused_and_shown_again_against_the_new_prices(console, staff):
    html = review(console, start="now").content.decode()
    # Meanwhile, someone else publishes a price for the same model.
    newer = services.price_version_create(
        model_slug="gpt-4o-mini", input_price_micro_per_mtok=140_000, output_price_micro_per_mtok=560_000, actor=staff
    )
    before = counts()
    response = console.post(PUBLISH, hidden_fields(html))
    page = response.content.decode()
    assert response.status_code == 409 and counts() == before
    assert "changed since this was confirmed" in page and "Nothing was published" in page
    # The fresh comparison is against the version now in effect, and publishing from it works.
    assert f"version #{newer.pk}" in page and hidden_fields(page)["confirmed_replaces"] == str(newer.pk)
    assert console.post(PUBLISH, hidden_fields(page)).status_code == 302
    assert PriceVersion.objects.filter(note="spring price cut").count() == 1


def test_cancelling_the_confirmation_writes_nothing_and_change_keeps_the_values(console):
    before = counts()
    html = review(console, start="now").content.decode()
    assert f'href="{MODEL}" data-testid="cancel-publish"' in html
    assert console.get(MODEL).status_code == 200
    edit = console.post(MODEL, {**hidden_fields(html), "edit": "1"})
    edited = edit.content.decode()
    assert edit.status_code == 200 and 'value="0.12"' in edited and 'value="spring price cut"' in edited
    assert 'data-testid="confirm-table"' not in edited
    assert counts() == before


def test_a_publish_without_a_confirmation_is_refused(console):
    before = counts()
    response = console.post(PUBLISH, {"input_price": "0.12", "output_price": "0.48"})
    assert response.status_code == 400 and counts() == before


def test_cancelling_a_scheduled_version_needs_and_keeps_a_reason(console, staff):
    version = services.price_version_create(
        model_slug="gpt-4o-mini",
        input_price_micro_per_mtok=120_000,
        output_price_micro_per_mtok=480_000,
        effective_from=timezone.now() + timedelta(days=3),
        actor=staff,
    )
    console.post(f"/staff/pricing/versions/{version.pk}/cancel/", {"reason": ""})
    version.refresh_from_db()
    assert version.cancelled_at is None
    console.post(f"/staff/pricing/versions/{version.pk}/cancel/", {"reason": "wrong figures"})
    version.refresh_from_db()
    assert version.cancelled_at is not None
    assert AuditEvent.objects.get(action="pricing.price_version.cancel").reason == "wrong figures"


def test_the_audit_page_shows_what_changed_who_when_and_why(console, staff, org_a):
    html = review(console, start="now").content.decode()
    console.post(PUBLISH, hidden_fields(html))
    services.override_create(
        organization_id=org_a.pk, model="gpt-4o", discount_bps=1500, reason="contract #9", actor=staff
    )
    page = console.get("/staff/pricing/audit/").content.decode()
    version = PriceVersion.objects.get(note="spring price cut")
    row = re.search(
        rf'<tr data-event="\d+">(?:(?!<tr data-event).)*PriceVersion:{version.pk}.*?</table>.*?</tr>', page, re.S
    )
    assert row, page
    text = row.group(0)
    assert "sam@staff.example.com" in text and "spring price cut" in text
    assert f"(gpt-4o-mini): price version #{version.pk}" in text
    assert "Input price</th><td>$0.15 / M tokens → $0.12 / M tokens" in text
    assert "Output price</th><td>$0.60 / M tokens → $0.48 / M tokens" in text
    assert "pricing.price_version.create" in text
    assert f"Org A (#{org_a.pk})" in page and "contract #9" in page and "Discount</th><td>— → 1500 bps (15%)" in page


def test_the_audit_page_filters_by_organization_model_and_actor(
    console, staff, org_a, org_b, django_assert_max_num_queries
):
    ada = UserFactory(username="ada@staff.example.com", email="ada@staff.example.com", is_staff=True)
    services.override_create(organization_id=org_a.pk, model="gpt-4o", discount_bps=100, reason="a-4o", actor=staff)
    services.override_create(
        organization_id=org_b.pk, model="gpt-4o-mini", discount_bps=200, reason="b-mini", actor=ada
    )
    services.price_version_create(
        model_slug="gpt-4o-mini",
        input_price_micro_per_mtok=120_000,
        output_price_micro_per_mtok=480_000,
        note="mini-cut",
        actor=ada,
    )

    def reasons(**params: object) -> set[str]:
        response = console.get("/staff/pricing/audit/", params)
        assert response.status_code == 200
        return set(re.findall(r'data-testid="audit-reason">([^<]*)<', response.content.decode()))

    assert reasons() == {"a-4o", "b-mini", "mini-cut"}
    assert reasons(organization=org_a.pk) == {"a-4o"}
    assert reasons(model="gpt-4o-mini") == {"b-mini", "mini-cut"}
    assert reasons(actor="ada@staff.example.com") == {"b-mini", "mini-cut"}
    assert reasons(actor="ada@staff.example.com", model="gpt-4o-mini", organization=org_b.pk) == {"b-mini"}
    assert reasons(model="gpt-4o", actor="ada@staff.example.com") == set()
    bad = console.get("/staff/pricing/audit/", {"organization": "999999"})
    assert bad.status_code == 400 and "999999 is not one of the available" in bad.content.decode()
    with django_assert_max_num_queries(12):
        console.get("/staff/pricing/audit/", {"model": "gpt-4o-mini"})


def test_the_audit_page_is_paginated_and_keeps_its_filters(console, staff):
    for n in range(55):
        services.plan_create(slug=f"plan-{n}", name=f"Plan {n}", fee_nano=1_000_000_000, actor=staff)
    first = console.get("/staff/pricing/audit/", {"actor": "sam@staff.example.com"}).content.decode()
    assert first.count("pricing.plan.create") == 50 and "Page 1 of 2" in first
    assert "actor=sam%40staff.example.com&amp;page=2" in first
    second = console.get("/staff/pricing/audit/", {"actor": "sam@staff.example.com", "page": 2}).content.decode()
    assert second.count("pricing.plan.create") == 5 and "plan-0)" in second


def test_only_staff_can_publish(client, alice, book):
    before = counts()
    data = {"input_price": "0.01", "output_price": "0.01", "start": "now", "confirmed_replaces": "0"}
    assert client.post(PUBLISH, data).status_code == 302
    client.force_login(alice)
    response = client.post(PUBLISH, data)
    assert response.status_code == 302 and "login" in response.url
    assert counts() == before
