"""/keys/: list, create (secret once), edit, rotate, revoke, over HTTP with Django's test client."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey
from accounts.services import apikey_create, apikey_revoke, apikey_rotate
from billing.metering.budgets.selectors import budget_window
from billing.metering.budgets.services import budget_create, key_spend_limit_set
from billing.metering.callers import apikey_authenticate
from billing.metering.models import Budget, BudgetSpend
from core.money import parse_amount


def secret_in(response) -> str:
    match = re.search(r'value="(sk-tb-[A-Za-z0-9]+)"[^>]*data-testid="api-key-secret"', response.content.decode())
    assert match, "no secret on the page"
    return match.group(1)


def in_days(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


VALID = {"name": "backend", "workflow": "support-bot", "spend_limit": "", "spend_limit_period": "", "expires_at": ""}


def limits_of(key: ApiKey) -> list[tuple[int, str]]:
    """The key's spend limits: its hard budgets, (amount, period)."""
    return list(
        Budget.objects.filter(scope="api_key", api_key=key, mode="hard")
        .order_by("period")
        .values_list("amount_nano", "period")
    )


def limited(org, name: str, amount: str, period: str, **kwargs) -> ApiKey:
    key = apikey_create(organization_id=org.pk, name=name, **kwargs)[0]
    key_spend_limit_set(
        organization_id=org.pk, api_key_id=key.pk, actor="t", amount_nano=parse_amount(amount), period=period
    )
    return key


class TestCreate:
    def test_the_secret_is_shown_once_and_only_its_hash_is_stored(self, as_bob, org_a, book):
        response = as_bob.post(
            "/keys/new/",
            {
                **VALID,
                "endpoints": ["chat", "balance"],
                "models": ["gpt-4o-mini"],
                "spend_limit": "25.50",
                "spend_limit_period": "month",
                "expires_at": in_days(365),
            },
        )
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        secret = secret_in(response)
        key = ApiKey.objects.get(organization=org_a)
        assert key.secret_hash == keyformat.secret_hash(secret) and secret not in key.secret_hash
        assert (key.name, key.workflow, key.created_by.username) == ("backend", "support-bot", "bob@example.com")
        assert (key.scope_endpoints, key.scope_models) == (["balance", "chat"], ["gpt-4o-mini"])
        # The limit is the key's hard budget, made with it.
        assert limits_of(key) == [(parse_amount("25.50"), "month")]
        assert key.expires_at.strftime("%Y-%m-%dT%H:%M") == in_days(365)
        assert apikey_authenticate(secret=secret).id == key.pk
        # Never again: neither the list nor the key's page holds the secret.
        for url in ("/keys/", f"/keys/{key.pk}/"):
            page = as_bob.get(url).content.decode()
            assert secret not in page
            assert f"sk-tb-{key.key_id}…" in page

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"name": ""}, "This field is required."),
            ({"name": "x" * 201}, "at most 200 characters"),
            ({"workflow": "has spaces"}, "workflow must be up to 100 letters"),
            ({"endpoints": ["teleport"]}, "Select a valid choice"),
            ({"models": ["no-such-model"]}, "Select a valid choice"),
            ({"spend_limit": "-5", "spend_limit_period": "day"}, "greater than zero"),
            ({"spend_limit": "abc", "spend_limit_period": "day"}, "is not a decimal amount"),
            ({"spend_limit": "10000000000000", "spend_limit_period": "day"}, "larger than"),
            ({"spend_limit": "1e999999", "spend_limit_period": "day"}, "is not a decimal amount"),
            ({"spend_limit": "0.0000000001", "spend_limit_period": "day"}, "more than 9 decimal places"),
            ({"spend_limit": "10"}, "Choose the period"),
            ({"spend_limit_period": "day"}, "Enter the amount of the limit"),
            ({"spend_limit": "10", "spend_limit_period": "year"}, "Select a valid choice"),
            ({"expires_at": "2001-01-01T00:00"}, "expires_at must be in the future"),
            ({"expires_at": "tomorrow"}, "Enter a valid date/time"),
            ({"expires_at": in_days(3700)}, "within ten years"),
        ],
    )
    def test_bad_input_is_refused_with_a_message_and_writes_nothing(self, as_bob, org_a, book, changes, message):
        response = as_bob.post("/keys/new/", {**VALID, **changes})
        assert response.status_code == 400
        assert message in response.content.decode()
        assert not ApiKey.objects.exists()
        assert not Budget.objects.exists()

    def test_an_admin_key_takes_no_limit(self, as_alice, org_a, book):
        response = as_alice.post(
            "/keys/new/", {**VALID, "workflow": "", "access": "admin", "spend_limit": "5", "spend_limit_period": "day"}
        )
        assert response.status_code == 400 and "takes no spend limit" in response.content.decode()
        assert not ApiKey.objects.exists() and not Budget.objects.exists()

    def test_an_owner_creates_an_admin_key_and_a_developer_cannot(self, as_alice, as_bob, org_a, book):
        assert as_bob.post("/keys/new/", {**VALID, "workflow": "", "access": "admin"}).status_code == 403
        assert not ApiKey.objects.exists()
        refused = as_alice.post("/keys/new/", {**VALID, "access": "admin", "endpoints": ["chat"]})
        assert refused.status_code == 400 and "takes no scopes" in refused.content.decode()
        response = as_alice.post("/keys/new/", {**VALID, "access": "admin"})
        secret = secret_in(response)
        key = ApiKey.objects.get(organization=org_a)
        assert key.access == "admin" and apikey_authenticate(secret=secret).access == "admin"
        assert ">admin</span>" in as_alice.get("/keys/").content.decode()

    def test_viewers_and_billing_admins_cannot_create_keys(self, as_vera, as_bill, book):
        for client in (as_vera, as_bill):
            assert client.get("/keys/new/").status_code == 403
            assert client.post("/keys/new/", VALID).status_code == 403
        assert not ApiKey.objects.exists()

    def test_the_create_button_shows_for_those_who_can(self, as_bob, as_vera):
        assert 'href="/keys/new/"' in as_bob.get("/keys/").content.decode()
        assert 'data-testid="new-key"' not in as_vera.get("/keys/").content.decode()


@pytest.fixture
def key(org_a) -> ApiKey:
    return apikey_create(organization_id=org_a.pk, name="backend", workflow="wf")[0]


class TestEdit:
    def test_changes_scopes_limit_expiry_and_label(self, as_bob, key, book):
        response = as_bob.post(
            f"/keys/{key.pk}/",
            {
                "name": "renamed",
                "workflow": "etl",
                "endpoints": ["embeddings"],
                "models": ["text-embedding-3-small"],
                "spend_limit": "3",
                "spend_limit_period": "week",
                "expires_at": in_days(800),
            },
        )
        assert response.status_code == 302
        key.refresh_from_db()
        assert (key.name, key.workflow, key.scope_endpoints, key.scope_models) == (
            "renamed",
            "etl",
            ["embeddings"],
            ["text-embedding-3-small"],
        )
        assert limits_of(key) == [(parse_amount("3"), "week")]
        assert key.expires_at.strftime("%Y-%m-%dT%H:%M") == in_days(800)

    def test_the_form_shows_the_limit_and_changes_it_in_place(self, as_bob, org_a, book):
        key = limited(org_a, "k", "1", "day")
        budget = Budget.objects.get(api_key=key)
        page = as_bob.get(f"/keys/{key.pk}/").content.decode()
        assert 'value="1.00"' in page or 'value="1"' in page
        response = as_bob.post(
            f"/keys/{key.pk}/", {**VALID, "name": "k", "spend_limit": "2", "spend_limit_period": "day"}
        )
        assert response.status_code == 302
        assert limits_of(key) == [(parse_amount("2"), "day")] and Budget.objects.get(api_key=key).pk == budget.pk
        # Another period replaces the limit the form showed: the key does not gain a second one.
        response = as_bob.post(
            f"/keys/{key.pk}/", {**VALID, "name": "k", "spend_limit": "2", "spend_limit_period": "week"}
        )
        assert response.status_code == 302
        assert limits_of(key) == [(parse_amount("2"), "week")]

    def test_removing_the_limit_and_expiry(self, as_bob, org_a, book):
        key = limited(org_a, "k", "1", "day", expires_at=timezone.now() + timedelta(days=3))
        response = as_bob.post(f"/keys/{key.pk}/", {**VALID, "name": "k", "workflow": ""})
        assert response.status_code == 302
        key.refresh_from_db()
        assert (limits_of(key), key.expires_at) == ([], None)

    def test_a_key_with_several_limits_keeps_them_when_the_form_leaves_the_limit_alone(self, as_bob, org_a, book):
        key = limited(org_a, "k", "1", "day")
        key_spend_limit_set(
            organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=parse_amount("5"), period="month"
        )
        page = as_bob.get(f"/keys/{key.pk}/").content.decode()
        assert 'data-testid="several-limits"' in page
        response = as_bob.post(f"/keys/{key.pk}/", {**VALID, "name": "renamed", "workflow": ""})
        assert response.status_code == 302
        assert limits_of(key) == [(parse_amount("1"), "day"), (parse_amount("5"), "month")]

    def test_bad_input_changes_nothing(self, as_bob, key, book):
        response = as_bob.post(
            f"/keys/{key.pk}/", {**VALID, "name": "new", "spend_limit": "-1", "spend_limit_period": "day"}
        )
        assert response.status_code == 400
        assert "greater than zero" in response.content.decode()
        key.refresh_from_db()
        assert key.name == "backend" and limits_of(key) == []

    def test_an_expired_key_can_still_be_renamed(self, as_bob, org_a, book):
        key = apikey_create(organization_id=org_a.pk, name="old", expires_at=timezone.now() + timedelta(days=1))[0]
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(days=1))
        key.refresh_from_db()
        data = {**VALID, "name": "older", "workflow": "", "expires_at": key.expires_at.strftime("%Y-%m-%dT%H:%M")}
        response = as_bob.post(f"/keys/{key.pk}/", data)
        assert response.status_code == 302, response.content.decode()
        key.refresh_from_db()
        assert key.name == "older"

    def test_a_revoked_key_cannot_be_changed(self, as_bob, key, book):
        apikey_revoke(api_key_id=key.pk, actor=None)
        page = as_bob.get(f"/keys/{key.pk}/").content.decode()
        assert "A revoked key cannot be changed." in page
        response = as_bob.post(f"/keys/{key.pk}/", {**VALID, "name": "new"})
        assert response.status_code == 400
        assert "revoked" in response.content.decode()
        key.refresh_from_db()
        assert key.name == "backend"

    def test_viewers_see_the_settings_but_cannot_change_them(self, as_vera, key, book):
        page = as_vera.get(f"/keys/{key.pk}/")
        assert page.status_code == 200
        assert "disabled" in page.content.decode()
        assert as_vera.post(f"/keys/{key.pk}/", {**VALID, "name": "hacked"}).status_code == 403
        key.refresh_from_db()
        assert key.name == "backend"


class TestRotate:
    def test_rotation_shows_the_new_secret_once_and_keeps_the_old_one_for_the_overlap(self, as_bob, org_a):
        key, old_secret = apikey_create(organization_id=org_a.pk, name="backend")
        assert as_bob.get(f"/keys/{key.pk}/rotate/").status_code == 200
        response = as_bob.post(f"/keys/{key.pk}/rotate/", {"overlap_hours": "48"})
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        new_secret = secret_in(response)
        key.refresh_from_db()
        new = key.replaced_by
        assert new is not None and keyformat.secret_hash(new_secret) == new.secret_hash
        assert key.expires_at - key.rotated_at == timedelta(hours=48)
        assert "keeps working until" in response.content.decode()
        # Both work during the overlap.
        assert apikey_authenticate(secret=old_secret).id == key.pk
        assert apikey_authenticate(secret=new_secret).id == new.pk

    def test_a_rotated_keys_budgets_and_what_they_spent_follow_the_replacement(self, as_bob, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="backend")
        budget = budget_create(
            organization_id=org_a.pk,
            actor="t",
            scope="api_key",
            api_key_id=key.pk,
            amount_nano=parse_amount("5"),
            period="month",
            mode="hard",
        )
        start, _ = budget_window(period="month", at=timezone.now())
        BudgetSpend.objects.create(budget=budget, window_start=start, spent_nano=parse_amount("2"))
        assert as_bob.post(f"/keys/{key.pk}/rotate/", {"overlap_hours": "1"}).status_code == 200
        key.refresh_from_db()
        budget.refresh_from_db()
        assert budget.api_key_id == key.replaced_by_id
        assert BudgetSpend.objects.get(budget=budget).spent_nano == parse_amount("2")

    @pytest.mark.parametrize(
        ("overlap", "message"),
        [("-1", "greater than or equal to 0"), ("721", "less than or equal to 720"), ("x", "Enter a whole number")],
    )
    def test_the_overlap_must_be_within_bounds(self, as_bob, key, overlap, message):
        response = as_bob.post(f"/keys/{key.pk}/rotate/", {"overlap_hours": overlap})
        assert response.status_code == 400
        assert message in response.content.decode()
        key.refresh_from_db()
        assert key.replaced_by is None
        assert ApiKey.objects.count() == 1

    def test_a_revoked_key_cannot_be_rotated(self, as_bob, key):
        apikey_revoke(api_key_id=key.pk, actor=None)
        response = as_bob.post(f"/keys/{key.pk}/rotate/", {"overlap_hours": "1"})
        assert response.status_code == 400
        assert "this key is revoked" in response.content.decode()
        assert ApiKey.objects.count() == 1


class TestRevoke:
    def test_asks_then_revokes(self, as_bob, key):
        assert "Revoke key" in as_bob.get(f"/keys/{key.pk}/revoke/").content.decode()
        key.refresh_from_db()
        assert key.revoked_at is None
        response = as_bob.post(f"/keys/{key.pk}/revoke/")
        assert response.status_code == 302
        key.refresh_from_db()
        assert key.revoked_at is not None and key.revoked_by.username == "bob@example.com"
        assert ">revoked<" in as_bob.get("/keys/").content.decode()

    def test_viewers_cannot_revoke(self, as_vera, key):
        assert as_vera.post(f"/keys/{key.pk}/revoke/").status_code == 403
        key.refresh_from_db()
        assert key.revoked_at is None


def test_the_list_shows_every_column(as_vera, org_a, book):
    key = limited(
        org_a,
        "limited",
        "12.5",
        "day",
        workflow="etl",
        scopes={"endpoints": ["chat"], "models": ["gpt-4o"]},
        expires_at=timezone.now() + timedelta(days=10),
    )
    budget = Budget.objects.get(api_key=key)
    start, _ = budget_window(period="day", at=timezone.now())
    BudgetSpend.objects.create(
        budget=budget, window_start=start, spent_nano=parse_amount("3"), held_nano=parse_amount("1")
    )
    page = as_vera.get("/keys/").content.decode()
    for text in (
        "limited",
        "etl",
        "<span>chat</span>",
        '<span class="muted">gpt-4o</span>',
        "$12.50 per day",
        "$4.00 used",  # spent and held in the period
        f'href="/budgets/{budget.pk}/"',  # changed on the budgets page
        ">active<",
    ):
        assert text in page


def test_the_list_costs_the_same_queries_for_two_keys_or_twenty(as_bob, org_a):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_bob.get("/keys/").status_code == 200
        return len(captured)

    for n in range(2):
        apikey_create(organization_id=org_a.pk, name=f"k{n}")
    limited(org_a, "capped", "1", "day")
    two = queries()
    for n in range(18):
        key = apikey_create(organization_id=org_a.pk, name=f"more{n}")[0]
        if n % 3 == 0:
            apikey_rotate(api_key_id=key.pk, actor=None)
        if n % 2 == 0:  # each key's limit and its use come from the budgets, in the same queries for all
            key_spend_limit_set(organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=10, period="week")
    assert queries() == two
