"""/budgets/ and /api/budgets/: see budgets and their current period, add, change and remove them, by role;
another organization's budgets are 404; bad input is a 400 naming the field."""

import json

import pytest

from accounts.services import apikey_create
from billing.metering.budgets.services import budget_create
from billing.metering.models import Budget
from core.money import parse_amount

CREATE = {"scope": "workflow", "workflow": "agents", "amount": "5.00", "period": "day", "mode": "hard"}


def post_json(client, url, body, method="post"):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


class TestApi:
    def test_a_billing_admin_creates_reads_changes_and_removes_a_budget(self, as_bill, org_a):
        created = post_json(as_bill, "/api/budgets/", {**CREATE, "thresholds": [80, 50]})
        assert created.status_code == 201, created.content
        body = created.json()
        assert (body["scope"], body["workflow"], body["amount"], body["amount_nano"]) == (
            "workflow",
            "agents",
            "5.00",
            parse_amount("5"),
        )
        assert body["thresholds"] == [50, 80] and body["current_period"]["left"] == "5.00"
        budget_id = body["id"]
        listed = as_bill.get("/api/budgets/").json()
        assert [item["id"] for item in listed["data"]] == [budget_id]
        changed = post_json(
            as_bill,
            f"/api/budgets/{budget_id}/",
            {"amount": "7.50", "period": "month", "mode": "alert", "thresholds": []},
            method="put",
        )
        assert changed.status_code == 200
        assert (changed.json()["amount"], changed.json()["mode"]) == ("7.50", "alert")
        assert as_bill.delete(f"/api/budgets/{budget_id}/").status_code == 204
        assert not Budget.objects.exists()

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({**CREATE, "amount": 5}, "amount"),
            ({**CREATE, "amount": "-1"}, "amount"),
            ({**CREATE, "amount": "abc"}, "amount"),
            ({**CREATE, "period": "year"}, "period"),
            ({**CREATE, "thresholds": "50"}, "thresholds"),
            ({**CREATE, "workflow": ""}, "workflow"),
            ({**CREATE, "scope": "api_key", "workflow": "", "api_key_id": "1"}, "api_key_id"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, as_bill, body, param):
        response = post_json(as_bill, "/api/budgets/", body)
        assert response.status_code == 400, response.content
        assert response.json()["error"]["param"] == param
        assert not Budget.objects.exists()

    def test_malformed_json_is_a_400(self, as_bill):
        response = as_bill.post("/api/budgets/", data="{", content_type="application/json")
        assert response.status_code == 400
        assert post_json(as_bill, "/api/budgets/", [1]).status_code == 400

    def test_another_organizations_budget_and_key_are_404(self, as_charlie, org_a, as_bill):
        budget = budget_create(organization_id=org_a.pk, actor="t", scope="organization", amount_nano=1, period="day")
        key, _ = apikey_create(organization_id=org_a.pk, name="a")
        assert as_charlie.get(f"/api/budgets/{budget.pk}/").status_code == 404
        assert as_charlie.delete(f"/api/budgets/{budget.pk}/").status_code == 404
        assert as_charlie.get("/api/budgets/not-an-id/").status_code == 404
        assert as_charlie.get("/api/budgets/").json()["data"] == []
        response = post_json(
            as_charlie, "/api/budgets/", {**CREATE, "scope": "api_key", "workflow": "", "api_key_id": key.pk}
        )
        assert response.status_code == 404
        assert Budget.objects.count() == 1

    def test_roles(self, as_vera, as_bob, as_alice, org_a):
        # A viewer reads only; a developer sets workflow and key budgets but not the organization's; owners all.
        assert as_vera.get("/api/budgets/").status_code == 200
        assert post_json(as_vera, "/api/budgets/", CREATE).status_code == 403
        assert post_json(as_bob, "/api/budgets/", CREATE).status_code == 201
        organization = {**CREATE, "scope": "organization", "workflow": ""}
        assert post_json(as_bob, "/api/budgets/", organization).status_code == 403
        assert post_json(as_alice, "/api/budgets/", organization).status_code == 201

    def test_anonymous_is_refused(self, client, db):
        assert client.get("/api/budgets/").status_code in (401, 403)

    def test_it_is_in_the_public_schema(self, client, db):
        schema = client.get("/api/schema/?format=json").json()
        assert "/api/budgets/" in schema["paths"] and "/api/budgets/{budget_id}/" in schema["paths"]


class TestPage:
    def test_the_page_lists_budgets_with_their_period_and_adds_one(self, as_alice, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="robot")
        budget_create(
            organization_id=org_a.pk,
            actor="t",
            scope="api_key",
            api_key_id=key.pk,
            amount_nano=parse_amount("3"),
            period="week",
        )
        page = as_alice.get("/budgets/")
        assert page.status_code == 200
        text = page.content.decode()
        assert "robot" in text and "$3.00" in text and "Add a budget" in text
        response = as_alice.post(
            "/budgets/",
            {
                "scope": "organization",
                "workflow": "",
                "api_key": "",
                "amount": "100",
                "period": "month",
                "mode": "hard",
                "thresholds": "50, 90",
            },
        )
        assert response.status_code == 302
        budget = Budget.objects.get(scope="organization")
        assert (budget.amount_nano, budget.mode, budget.thresholds) == (parse_amount("100"), "hard", [50, 90])

    def test_a_bad_form_says_why(self, as_alice, org_a):
        response = as_alice.post(
            "/budgets/",
            {
                "scope": "workflow",
                "workflow": "",
                "api_key": "",
                "amount": "1",
                "period": "day",
                "mode": "hard",
                "thresholds": "fifty",
            },
        )
        assert response.status_code == 400
        assert "Thresholds are whole percentages" in response.content.decode()

    def test_a_budget_is_changed_and_removed_on_its_page(self, as_bill, org_a):
        budget = budget_create(organization_id=org_a.pk, actor="t", scope="organization", amount_nano=1, period="day")
        assert as_bill.get(f"/budgets/{budget.pk}/").status_code == 200
        response = as_bill.post(
            f"/budgets/{budget.pk}/", {"amount": "2.00", "period": "week", "mode": "alert", "thresholds": ""}
        )
        assert response.status_code == 302
        budget.refresh_from_db()
        assert (budget.amount_nano, budget.period, budget.thresholds) == (parse_amount("2"), "week", [])
        assert as_bill.post(f"/budgets/{budget.pk}/", {"delete": "1"}).status_code == 302
        assert not Budget.objects.exists()

    def test_a_viewer_sees_but_cannot_change(self, as_vera, org_a):
        budget = budget_create(organization_id=org_a.pk, actor="t", scope="organization", amount_nano=1, period="day")
        assert "Add a budget" not in as_vera.get("/budgets/").content.decode()
        assert as_vera.post(f"/budgets/{budget.pk}/", {"delete": "1"}).status_code == 403
        assert Budget.objects.exists()

    def test_another_organizations_budget_page_is_404(self, as_charlie, org_a):
        budget = budget_create(organization_id=org_a.pk, actor="t", scope="organization", amount_nano=1, period="day")
        assert as_charlie.get(f"/budgets/{budget.pk}/").status_code == 404


class TestKeyRateLimits:
    def test_a_developer_sets_and_removes_a_keys_limits_as_json(self, as_bob, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        url = f"/api/keys/{key.pk}/rate-limits/"
        response = post_json(as_bob, url, {"requests_per_minute": 30, "tokens_per_minute": 9000}, method="put")
        assert response.status_code == 200, response.content
        assert response.json() == {"api_key_id": key.pk, "requests_per_minute": 30, "tokens_per_minute": 9000}
        assert as_bob.get(url).json()["tokens_per_minute"] == 9000
        post_json(as_bob, url, {"requests_per_minute": None, "tokens_per_minute": None}, method="put")
        key.refresh_from_db()
        assert (key.requests_per_minute, key.tokens_per_minute) == (None, None)

    def test_bad_input_roles_and_other_organizations(self, as_bob, as_vera, as_charlie, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        url = f"/api/keys/{key.pk}/rate-limits/"
        bad = post_json(as_bob, url, {"requests_per_minute": 0, "tokens_per_minute": None}, method="put")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "requests_per_minute"
        missing = post_json(as_bob, url, {"requests_per_minute": 5}, method="put")
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "tokens_per_minute"
        body = {"requests_per_minute": 5, "tokens_per_minute": None}
        assert post_json(as_vera, url, body, method="put").status_code == 403
        assert post_json(as_charlie, url, body, method="put").status_code == 404
        assert as_charlie.get(url).status_code == 404
        key.refresh_from_db()
        assert key.requests_per_minute is None

    def test_the_keys_page_sets_them(self, as_bob, org_a, book):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        page = as_bob.get(f"/keys/{key.pk}/").content.decode()
        assert 'name="requests_per_minute"' in page
        response = as_bob.post(
            f"/keys/{key.pk}/",
            {
                "name": "k",
                "workflow": "",
                "spend_limit": "",
                "spend_limit_period": "",
                "expires_at": "",
                "requests_per_minute": "12",
                "tokens_per_minute": "",
            },
        )
        assert response.status_code == 302
        key.refresh_from_db()
        assert (key.requests_per_minute, key.tokens_per_minute) == (12, None)


def test_a_keys_page_shows_its_budgets(as_vera, org_a, book):
    key, _ = apikey_create(organization_id=org_a.pk, name="robot")
    budget_create(
        organization_id=org_a.pk,
        actor="t",
        scope="api_key",
        api_key_id=key.pk,
        amount_nano=parse_amount("4"),
        period="day",
        mode="hard",
    )
    page = as_vera.get(f"/keys/{key.pk}/").content.decode()
    assert "Budgets of this key" in page and "$4.00 per day" in page and "(hard limit)" in page
