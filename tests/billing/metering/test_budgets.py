"""Budget services: what a budget may be, and thresholds crossed recorded once per period and emailed once."""

import json
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.db import connection

from accounts.models import AuditEvent
from accounts.services import apikey_create
from billing.metering.budgets.selectors import budget_list, budget_window
from billing.metering.budgets.services import (
    budget_alert_webhook_emit,
    budget_create,
    budget_delete,
    budget_thresholds_crossed,
    budget_update,
)
from billing.metering.errors import BudgetConflict, BudgetNotFound
from billing.metering.models import Budget, BudgetAlert, BudgetSpend
from billing.webhooks import services as webhooks
from billing.webhooks.models import WebhookEvent
from core.errors import ApplicationError
from core.money import parse_amount

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday


def org_budget(org, **overrides) -> Budget:
    values = {"scope": "organization", "amount_nano": parse_amount("10"), "period": "month", "mode": "hard"}
    return budget_create(organization_id=org.pk, actor="t", **{**values, **overrides})


def spent(budget: Budget, amount: str, *, at: datetime = NOW) -> None:
    start, _ = budget_window(period=budget.period, at=at)
    BudgetSpend.objects.update_or_create(
        budget=budget, window_start=start, defaults={"spent_nano": parse_amount(amount, allow_zero=True)}
    )


def test_windows_are_utc_calendar_periods():
    assert budget_window(period="day", at=NOW) == (
        datetime(2026, 12, 9, tzinfo=UTC),
        datetime(2026, 12, 10, tzinfo=UTC),
    )
    assert budget_window(period="week", at=NOW) == (
        datetime(2026, 12, 7, tzinfo=UTC),
        datetime(2026, 12, 14, tzinfo=UTC),
    )
    assert budget_window(period="month", at=NOW) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"scope": "team"}, "scope"),
        ({"amount_nano": 0}, "amount"),
        ({"amount_nano": -5}, "amount"),
        ({"amount_nano": 10**30}, "amount"),
        ({"amount_nano": "10"}, "amount"),
        ({"period": "year"}, "period"),
        ({"mode": "soft"}, "mode"),
        ({"thresholds": [0]}, "thresholds"),
        ({"thresholds": ["50"]}, "thresholds"),
        ({"thresholds": "50"}, "thresholds"),
        ({"thresholds": list(range(1, 20))}, "thresholds"),
        ({"scope": "workflow", "workflow": ""}, "workflow"),
        ({"scope": "workflow", "workflow": "x" * 101}, "workflow"),
        ({"scope": "api_key", "api_key_id": None}, "api_key_id"),
    ],
)
def test_bad_budgets_are_refused_naming_the_field(org_a, overrides, param):
    with pytest.raises(ApplicationError) as caught:
        org_budget(org_a, **overrides)
    assert caught.value.param == param
    assert not Budget.objects.exists()


def test_another_organizations_key_reads_as_unknown(org_a, org_b):
    key, _ = apikey_create(organization_id=org_b.pk, name="theirs")
    with pytest.raises(BudgetNotFound):
        org_budget(org_a, scope="api_key", api_key_id=key.pk)


def test_one_budget_per_target_and_period(org_a):
    org_budget(org_a)
    org_budget(org_a, period="day")
    with pytest.raises(BudgetConflict):
        org_budget(org_a)
    org_budget(org_a, scope="workflow", workflow="agents")
    with pytest.raises(BudgetConflict):
        org_budget(org_a, scope="workflow", workflow="agents")
    assert Budget.objects.count() == 3


def test_changes_and_removal_are_audited_and_scoped_to_the_organization(org_a, org_b):
    budget = org_budget(org_a, thresholds=[100, 50, 50])
    assert budget.thresholds == [50, 100]
    with pytest.raises(BudgetNotFound):
        budget_update(
            organization_id=org_b.pk,
            budget_id=budget.pk,
            actor="t",
            amount_nano=1,
            period="day",
            mode="alert",
            thresholds=[],
        )
    budget_update(
        organization_id=org_a.pk,
        budget_id=budget.pk,
        actor="t",
        amount_nano=parse_amount("3"),
        period="day",
        mode="alert",
        thresholds=[],
    )
    budget.refresh_from_db()
    assert (budget.amount_nano, budget.period, budget.mode, budget.thresholds) == (
        parse_amount("3"),
        "day",
        "alert",
        [],
    )
    with pytest.raises(BudgetNotFound):
        budget_delete(organization_id=org_b.pk, budget_id=budget.pk, actor="t")
    budget_delete(organization_id=org_a.pk, budget_id=budget.pk, actor="t")
    assert not Budget.objects.exists()
    actions = list(AuditEvent.objects.filter(organization=org_a).order_by("id").values_list("action", flat=True))
    assert actions == ["budget.create", "budget.update", "budget.delete"]


def test_each_threshold_is_recorded_once_per_period_and_emailed_once(
    org_a, alice, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    budget = org_budget(org_a, thresholds=[50, 80, 100])
    spent(budget, "4.99")
    assert budget_thresholds_crossed(organization_id=org_a.pk, now=NOW) == []
    spent(budget, "8.00")
    with django_capture_on_commit_callbacks(execute=True):
        crossed = budget_thresholds_crossed(organization_id=org_a.pk, now=NOW)
    assert [alert.threshold_percent for alert in crossed] == [50, 80]
    assert len(mail.outbox) == 2
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "80%" in mail.outbox[1].subject and "$8.00" in mail.outbox[1].body
    # Seen again: nothing new, nothing sent.
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_thresholds_crossed(organization_id=org_a.pk, now=NOW) == []
    assert len(mail.outbox) == 2
    # The next month starts again from nothing.
    next_month = datetime(2027, 1, 2, tzinfo=UTC)
    spent(budget, "10.00", at=next_month)
    with django_capture_on_commit_callbacks(execute=True):
        crossed = budget_thresholds_crossed(organization_id=org_a.pk, now=next_month)
    assert [alert.threshold_percent for alert in crossed] == [50, 80, 100]
    assert BudgetAlert.objects.filter(budget=budget).count() == 5
    assert all(alert.emailed_at and alert.recipients == ["alice@example.com"] for alert in BudgetAlert.objects.all())


def test_the_list_shows_each_budgets_current_period(org_a, org_b):
    budget = org_budget(org_a, period="week")
    spent(budget, "2.50")
    org_budget(org_b)
    [state] = budget_list(organization_id=org_a.pk, now=NOW)
    assert (state.spent_nano, state.held_nano, state.left_nano, state.percent_spent) == (
        parse_amount("2.50"),
        0,
        parse_amount("7.50"),
        25,
    )
    assert state.resets_at == datetime(2026, 12, 14, tzinfo=UTC)


def test_each_crossing_is_sent_to_webhooks_once_and_the_whole_budget_as_exceeded(org_a):
    webhooks.webhook_endpoint_create(
        organization_id=org_a.pk,
        actor=None,
        url="https://hooks.example.com/in",
        event_types=["budget.threshold_crossed", "budget.exceeded"],
    )
    budget = org_budget(org_a, thresholds=[50, 100])
    spent(budget, "10.00")
    crossed = budget_thresholds_crossed(organization_id=org_a.pk, now=NOW)
    for alert in crossed * 2:  # a retried task sends nothing more
        budget_alert_webhook_emit(alert_id=alert.pk)
    bodies = [json.loads(body) for body in WebhookEvent.objects.order_by("id").values_list("body", flat=True)]
    assert [(b["type"], b["data"]["threshold_percent"]) for b in bodies] == [
        ("budget.threshold_crossed", 50),
        ("budget.threshold_crossed", 100),
        ("budget.exceeded", 100),
    ]
    assert bodies[0]["data"]["budget"]["id"] == budget.pk
    assert bodies[0]["data"]["spent"] == "10.00" and bodies[0]["data"]["budget"]["amount"] == "10.00"
    assert bodies[0]["data"]["budget"]["api_key"] is None


def test_a_key_budgets_crossing_names_its_key_by_its_public_id_too(org_a):
    webhooks.webhook_endpoint_create(
        organization_id=org_a.pk, actor=None, url="https://hooks.example.com/in", event_types=["budget.exceeded"]
    )
    key, _ = apikey_create(organization_id=org_a.pk, name="batch")
    budget = org_budget(org_a, scope="api_key", api_key_id=key.pk, thresholds=[100])
    spent(budget, "10.00")
    [alert] = budget_thresholds_crossed(organization_id=org_a.pk, now=NOW)
    budget_alert_webhook_emit(alert_id=alert.pk)
    [body] = [json.loads(body) for body in WebhookEvent.objects.values_list("body", flat=True)]
    assert (body["data"]["budget"]["api_key_id"], body["data"]["budget"]["api_key"]) == (
        key.pk,
        {"id": key.pk, "key_id": key.key_id, "name": "batch"},
    )


@pytest.mark.parametrize(
    ("budget", "call", "covers"),
    [
        # (organization, scope, workflow, api key) of the budget; (organization, workflow, api key) of the call.
        ((1, "organization", "", None), (1, "agents", 7), True),
        ((1, "organization", "", None), (2, "agents", 7), False),
        ((1, "workflow", "agents", None), (1, "agents", 7), True),
        ((1, "workflow", "agents", None), (1, "", 7), False),
        ((1, "workflow", "agents", None), (2, "agents", 7), False),
        ((1, "api_key", "", 7), (1, "agents", 7), True),
        ((1, "api_key", "", 7), (1, "agents", 8), False),
        ((1, "api_key", "", 7), (1, "agents", None), False),
        ((1, "api_key", "", 7), (2, "agents", 7), False),
        ((1, "team", "agents", 7), (1, "agents", 7), False),
    ],
)
def test_budget_covers_is_which_budgets_a_call_is_claimed_from_and_counted_against(budget, call, covers):
    # The one place this is written: the budgeted hold, the settle and reported events all call it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT budget_covers(%s::bigint, %s::text, %s::text, %s::bigint, %s::bigint, %s::text, %s::bigint)"
            " IS TRUE",
            [*budget, *call],
        )
        assert cursor.fetchone() == (covers,)
