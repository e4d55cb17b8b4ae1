"""Budgets and their counters per period (Budget, BudgetSpend, BudgetSpendHold, BudgetAlert: see
billing.metering.budgets). An API key's spend limit is one kind of budget: a hard budget of the key.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class BudgetScope(models.TextChoices):
    ORGANIZATION = "organization", "Organization"
    WORKFLOW = "workflow", "Workflow"
    API_KEY = "api_key", "API key"


class BudgetMode(models.TextChoices):
    ALERT = "alert", "Alert only"
    HARD = "hard", "Hard limit"


class BudgetPeriod(models.TextChoices):
    # The SQL of ledger_hold_place_budgeted truncates to these names (date_trunc, UTC).
    DAY = "day", "Per day"
    WEEK = "week", "Per week"
    MONTH = "month", "Per month"


DEFAULT_THRESHOLDS = (50, 80, 100)


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class Budget(models.Model):
    """An amount an organization, one of its workflows, or one of its API keys may spend per calendar period (UTC).

    Every gateway call is claimed against each budget that covers it (its organization's, its workflow's, its
    key's) in the statement that places its credit hold (ledger_hold_place_budgeted): a hard budget refuses a call
    whose hold would take spent + held past the amount, an alert-only budget only counts it. A reported usage event
    is counted the same way when it is charged (billing.metering.budgets.CHARGE). Crossing a threshold (a percentage
    of the amount, spent) is recorded once per period (BudgetAlert) and emailed. A hard budget of an API key is
    the key's spend limit (its refusals say so: `key_spend_limit_reached`).
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=20, choices=BudgetScope.choices)
    # The workflow tag (billing.usage.models.UsageRecord.workflow) for scope "workflow", else "".
    workflow = models.CharField(max_length=100, blank=True, default="")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    amount_nano = models.BigIntegerField()
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices)
    mode = models.CharField(max_length=10, choices=BudgetMode.choices, default=BudgetMode.ALERT)
    # Percentages of the amount at which an alert goes out, ascending.
    thresholds = ArrayField(models.PositiveSmallIntegerField(), default=default_thresholds, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="budget_amount_positive"),
            models.CheckConstraint(condition=Q(scope__in=BudgetScope.values), name="budget_scope_valid"),
            models.CheckConstraint(condition=Q(mode__in=BudgetMode.values), name="budget_mode_valid"),
            models.CheckConstraint(condition=Q(period__in=BudgetPeriod.values), name="budget_period_valid"),
            # Exactly the target its scope names.
            models.CheckConstraint(
                condition=(
                    Q(scope=BudgetScope.ORGANIZATION, workflow="", api_key__isnull=True)
                    | (Q(scope=BudgetScope.WORKFLOW, api_key__isnull=True) & ~Q(workflow=""))
                    | Q(scope=BudgetScope.API_KEY, workflow="", api_key__isnull=False)
                ),
                name="budget_scope_target",
            ),
            # One budget per target and period (a daily and a monthly budget may both cover one target).
            models.UniqueConstraint(
                fields=["organization", "scope", "workflow", "api_key", "period"],
                name="budget_one_per_target_period",
                nulls_distinct=False,
            ),
        ]
        indexes = [models.Index(fields=["organization", "scope"], name="budget_org_scope")]

    def __str__(self) -> str:
        return f"{self.scope} budget {self.pk} of organization {self.organization_id}"


class BudgetSpend(models.Model):
    """What the calls a budget covers spent (captured) and hold (in flight) in one of its periods."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="spends")
    window_start = models.DateTimeField()
    spent_nano = models.BigIntegerField(default=0)
    held_nano = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "window_start"], name="budgetspend_one_per_period"),
            models.CheckConstraint(condition=Q(spent_nano__gte=0), name="budgetspend_spent_not_negative"),
            models.CheckConstraint(condition=Q(held_nano__gte=0), name="budgetspend_held_not_negative"),
        ]

    def __str__(self) -> str:
        return f"budget {self.budget_id} from {self.window_start:%Y-%m-%d}: {self.spent_nano} spent"


class BudgetSpendHold(models.Model):
    """One call's part of a BudgetSpend's held_nano, until its settle (or the sweeper) removes it: whoever deletes
    the row applies the correction, so it is applied exactly once."""

    budget_spend = models.ForeignKey(BudgetSpend, on_delete=models.CASCADE, related_name="holds")
    # The gateway request id; its ledger hold's idempotency key is "gw:<request_id>".
    request_id = models.CharField(max_length=200)
    amount_nano = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="budgetspendhold_amount_positive"),
            models.UniqueConstraint(fields=["request_id", "budget_spend"], name="budgetspendhold_once"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_nano} held for {self.request_id}"


class BudgetAlert(models.Model):
    """A threshold of a budget crossed in one of its periods: recorded once (the unique constraint), emailed once
    (the claim on emailed_at)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    window_start = models.DateTimeField()
    threshold_percent = models.PositiveSmallIntegerField()
    # The budget's amount and what was spent when the crossing was seen.
    amount_nano = models.BigIntegerField()
    spent_nano = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())
    emailed_at = models.DateTimeField(null=True, blank=True)
    recipients = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "window_start", "threshold_percent"], name="budgetalert_once_per_period"
            ),
        ]

    def __str__(self) -> str:
        return f"budget {self.budget_id} at {self.threshold_percent}% from {self.window_start:%Y-%m-%d}"
