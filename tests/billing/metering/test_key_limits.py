"""A key's spend limit is a hard budget of the key: set, changed and removed through the budget services, and made
from the keys' former limit columns, counters and requests in flight by the migration."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import ApiKey, AuditEvent
from accounts.services import apikey_create, apikey_rotate
from billing.metering import budgets
from billing.metering.budgets.selectors import budget_window, key_spend_limits
from billing.metering.budgets.services import (
    budget_create,
    budgets_follow_rotation,
    key_spend_limit_set,
    key_spend_limits_clear,
)
from billing.metering.models import Budget, BudgetSpend, BudgetSpendHold
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, parse_amount


def usd(amount: str) -> int:
    return parse_amount(amount)


def limits(key: ApiKey) -> list[tuple[int, str, str, list[int]]]:
    return list(
        Budget.objects.filter(scope="api_key", api_key=key)
        .order_by("period")
        .values_list("amount_nano", "period", "mode", "thresholds")
    )


class TestSetAndClear:
    def test_a_limit_is_the_keys_hard_budget_without_alerts(self, org_a, alice):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        budget = key_spend_limit_set(
            organization_id=org_a.pk, api_key_id=key.pk, actor=alice, amount_nano=usd("5"), period="day"
        )
        assert limits(key) == [(usd("5"), "day", "hard", [])]
        assert AuditEvent.objects.filter(action="budget.create", target=f"Budget:{budget.pk}").exists()
        # Set again for the same period: the same budget, changed.
        again = key_spend_limit_set(
            organization_id=org_a.pk, api_key_id=key.pk, actor=alice, amount_nano=usd("7"), period="day"
        )
        assert again.pk == budget.pk and limits(key) == [(usd("7"), "day", "hard", [])]
        assert [state.budget.pk for state in key_spend_limits(organization_id=org_a.pk)[key.pk]] == [budget.pk]

    def test_an_alert_budget_of_the_period_becomes_the_limit_and_keeps_its_thresholds(self, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        alert = budget_create(
            organization_id=org_a.pk,
            actor="t",
            scope="api_key",
            api_key_id=key.pk,
            amount_nano=usd("9"),
            period="month",
            thresholds=[80],
        )
        limit = key_spend_limit_set(
            organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=usd("4"), period="month"
        )
        assert limit.pk == alert.pk and limits(key) == [(usd("4"), "month", "hard", [80])]

    def test_clearing_removes_every_limit_of_the_key_and_nothing_else(self, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        other, _ = apikey_create(organization_id=org_a.pk, name="other")
        for period in ("day", "month"):
            key_spend_limit_set(organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=10, period=period)
        budget_create(
            organization_id=org_a.pk, actor="t", scope="api_key", api_key_id=key.pk, amount_nano=10, period="week"
        )
        key_spend_limit_set(organization_id=org_a.pk, api_key_id=other.pk, actor="t", amount_nano=10, period="day")
        assert key_spend_limits_clear(organization_id=org_a.pk, api_key_id=key.pk, actor="t") == 2
        assert limits(key) == [(10, "week", "alert", [50, 80, 100])]
        assert limits(other) == [(10, "day", "hard", [])]

    @pytest.mark.parametrize(
        ("amount", "period", "message"),
        [
            (-1, "day", "greater than zero"),
            (0, "day", "greater than zero"),
            (MAX_AMOUNT_NANO + 1, "day", "at most"),
            (1.5, "day", "whole number"),
            (10, "year", "period must be one of"),
            (10, None, "period must be one of"),
        ],
    )
    def test_bad_limits_are_refused_and_write_nothing(self, org_a, amount, period, message):
        key, _ = apikey_create(organization_id=org_a.pk, name="k")
        with pytest.raises(ApplicationError, match=message):
            key_spend_limit_set(
                organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=amount, period=period
            )
        assert not Budget.objects.exists()

    def test_another_organizations_key_takes_no_limit_from_here(self, org_a, org_b):
        key, _ = apikey_create(organization_id=org_b.pk, name="theirs")
        with pytest.raises(ApplicationError, match="API key not found"):
            key_spend_limit_set(organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=10, period="day")
        assert not Budget.objects.exists()

    def test_a_rotated_keys_limit_follows_the_replacement(self, org_a):
        key, _ = apikey_create(organization_id=org_a.pk, name="k", scopes={"endpoints": ["chat"]})
        key_spend_limit_set(organization_id=org_a.pk, api_key_id=key.pk, actor="t", amount_nano=10, period="week")
        new, _ = apikey_rotate(api_key_id=key.pk, actor=None)
        assert budgets_follow_rotation(organization_id=org_a.pk, old_key_id=key.pk, new_key_id=new.pk) == 1
        assert (limits(key), limits(new)) == ([], [(10, "week", "hard", [])])


# --- the migration ------------------------------------------------------------------------------------------------

BEFORE = [("accounts", "0008_apikey_rate_limits"), ("metering", "0002_budgets")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_limits_their_spending_and_requests_in_flight_onto_key_budgets():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Organization, OldKey = old.get_model("accounts", "Organization"), old.get_model("accounts", "ApiKey")
    OldBudget, OldBudgetSpend = old.get_model("metering", "Budget"), old.get_model("metering", "BudgetSpend")
    OldPart = old.get_model("metering", "BudgetSpendHold")
    KeySpend, KeySpendHold = old.get_model("metering", "KeySpend"), old.get_model("metering", "KeySpendHold")
    now = timezone.now()

    def window(period: str) -> object:
        return budget_window(period=period, at=now)[0]

    org = Organization.objects.create(name="Org")

    def key(name: str, limit: str | None = None, period: str = "") -> object:
        return OldKey.objects.create(
            organization=org,
            name=name,
            key_id=name,
            secret_hash="0" * 64,
            spend_limit_nano=usd(limit) if limit else None,
            spend_limit_period=period,
        )

    # A plain limit, with this period's spending, a request in flight, and an older period's spending.
    plain = key("plain", "5", "day")
    today = KeySpend.objects.create(
        api_key=plain, window_start=window("day"), spent_nano=usd("1"), held_nano=usd("0.3")
    )
    KeySpendHold.objects.create(key_spend=today, request_id="req-plain", amount_nano=usd("0.3"))
    KeySpend.objects.create(api_key=plain, window_start=window("day") - timedelta(days=3), spent_nano=usd("4"))
    # A limit beside an alert-only budget of the same period that counted more than the limit's counter.
    beside = key("beside", "2", "month")
    alert = OldBudget.objects.create(
        organization=org, scope="api_key", api_key=beside, amount_nano=usd("3"), period="month", thresholds=[50, 100]
    )
    OldBudgetSpend.objects.create(budget=alert, window_start=window("month"), spent_nano=usd("2.5"))
    KeySpend.objects.create(api_key=beside, window_start=window("month"), spent_nano=usd("1.8"))
    # A limit beside a smaller hard budget of the same period, both holding the same request in flight.
    hard = key("hard", "1", "week")
    smaller = OldBudget.objects.create(
        organization=org, scope="api_key", api_key=hard, amount_nano=usd("0.5"), period="week", mode="hard"
    )
    counter = OldBudgetSpend.objects.create(budget=smaller, window_start=window("week"), held_nano=usd("0.1"))
    OldPart.objects.create(budget_spend=counter, request_id="req-hard", amount_nano=usd("0.1"))
    this_week = KeySpend.objects.create(api_key=hard, window_start=window("week"), held_nano=usd("0.1"))
    KeySpendHold.objects.create(key_spend=this_week, request_id="req-hard", amount_nano=usd("0.1"))
    # A limit beside a budget of another period; and a key without a limit.
    other_period = key("other-period", "4", "week")
    daily = OldBudget.objects.create(
        organization=org, scope="api_key", api_key=other_period, amount_nano=usd("1"), period="day"
    )
    unlimited = key("unlimited")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert not {"api_keyspend", "api_keyspendhold"} & set(connection.introspection.table_names())
    assert "spend_limit_nano" not in {field.name for field in ApiKey._meta.get_fields()}

    def counter_of(budget: Budget, period: str) -> tuple[int, int]:
        spend = BudgetSpend.objects.get(budget=budget, window_start=window(period))
        return spend.spent_nano, spend.held_nano

    (plain_limit,) = Budget.objects.filter(api_key_id=plain.pk)
    assert (plain_limit.scope, plain_limit.mode, plain_limit.amount_nano, plain_limit.period) == (
        "api_key",
        "hard",
        usd("5"),
        "day",
    )
    assert plain_limit.thresholds == []  # limits were never emailed
    assert counter_of(plain_limit, "day") == (usd("1"), usd("0.3"))
    assert BudgetSpend.objects.filter(budget=plain_limit).count() == 1  # past periods stay in the usage records
    part = BudgetSpendHold.objects.get(request_id="req-plain")
    assert (part.budget_spend.budget_id, part.amount_nano) == (plain_limit.pk, usd("0.3"))

    beside_limit = Budget.objects.get(api_key_id=beside.pk)
    assert (beside_limit.pk, beside_limit.mode, beside_limit.amount_nano, beside_limit.thresholds) == (
        alert.pk,
        "hard",
        usd("2"),
        [50, 100],
    )
    assert counter_of(beside_limit, "month") == (usd("2.5"), 0)

    hard_limit = Budget.objects.get(api_key_id=hard.pk)
    assert (hard_limit.pk, hard_limit.amount_nano) == (smaller.pk, usd("0.5"))
    assert counter_of(hard_limit, "week") == (0, usd("0.1"))  # the request is held once
    assert BudgetSpendHold.objects.filter(request_id="req-hard").count() == 1

    assert sorted(Budget.objects.filter(api_key_id=other_period.pk).values_list("period", "mode", "amount_nano")) == [
        ("day", "alert", usd("1")),
        ("week", "hard", usd("4")),
    ]
    assert Budget.objects.filter(pk=daily.pk).exists()
    assert not Budget.objects.filter(api_key_id=unlimited.pk).exists()

    # The request in flight settles against the budget now: its part is freed and what it cost is spent.
    with connection.cursor() as cursor:
        covered = budgets.covered_params(
            organization_id=org.pk, api_key_id=plain.pk, workflow="", request_id="req-plain"
        )
        cursor.execute(budgets.SETTLE, budgets.settle_params(covered=covered, captured_nano=usd("0.2")))
    assert counter_of(plain_limit, "day") == (usd("1.2"), 0)
    assert not BudgetSpendHold.objects.filter(request_id="req-plain").exists()
