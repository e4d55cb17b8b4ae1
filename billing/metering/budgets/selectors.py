"""Reads of budgets: an organization's budgets with what they spent and hold in their current period."""

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from billing.metering.errors import BudgetNotFound
from billing.metering.models import Budget, BudgetMode, BudgetPeriod, BudgetScope, BudgetSpend


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget with its current period: [window_start, resets_at), spent (settled) and held (calls in flight)."""

    budget: Budget
    window_start: datetime
    resets_at: datetime
    spent_nano: int
    held_nano: int

    @property
    def used_nano(self) -> int:
        return self.spent_nano + self.held_nano

    @property
    def left_nano(self) -> int:
        return max(0, self.budget.amount_nano - self.used_nano)

    @property
    def percent_spent(self) -> int:
        return self.spent_nano * 100 // self.budget.amount_nano


def budget_window(*, period: str, at: datetime) -> tuple[datetime, datetime]:
    """The calendar period (UTC) containing `at`: [start, end); weeks start on Monday. The same periods as the SQL
    of ledger_hold_place_budgeted (date_trunc in UTC)."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == BudgetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == BudgetPeriod.MONTH:
        start = day.replace(day=1)
        return start, start + timedelta(days=monthrange(start.year, start.month)[1])
    raise ValueError(f"unknown budget period {period!r}")


def budget_list(*, organization_id: int, now: datetime | None = None) -> list[BudgetState]:
    """The organization's budgets (organization first, then workflows, then keys), each with its current period."""
    now = now or timezone.now()
    budgets = list(
        Budget.objects.filter(organization_id=organization_id)
        .select_related("api_key")
        .order_by("scope", "workflow", "api_key_id", "period", "id")
    )
    windows = {budget.pk: budget_window(period=budget.period, at=now) for budget in budgets}
    spends = {
        (spend.budget_id, spend.window_start): spend
        for spend in BudgetSpend.objects.filter(
            budget__organization_id=organization_id,
            window_start__in={start for start, _ in windows.values()},
        )
    }
    states = []
    for budget in budgets:
        start, end = windows[budget.pk]
        spend = spends.get((budget.pk, start))
        spent, held = (spend.spent_nano, spend.held_nano) if spend else (0, 0)
        states.append(BudgetState(budget, start, end, spent, held))
    return states


def budget_get(*, organization_id: int, budget_id: int, now: datetime | None = None) -> BudgetState:
    """One budget of the organization; an unknown id, or another organization's, is BudgetNotFound."""
    for state in budget_list(organization_id=organization_id, now=now):
        if state.budget.pk == budget_id:
            return state
    raise BudgetNotFound("budget not found", param="budget_id")


def key_spend_limits(*, organization_id: int, now: datetime | None = None) -> dict[int, list[BudgetState]]:
    """Each API key's spend limits (its hard budgets) with their current period, by key id: what the key list
    shows beside each key."""
    limits: dict[int, list[BudgetState]] = {}
    for state in budget_list(organization_id=organization_id, now=now):
        budget = state.budget
        if budget.scope == BudgetScope.API_KEY and budget.mode == BudgetMode.HARD and budget.api_key_id is not None:
            limits.setdefault(budget.api_key_id, []).append(state)
    return limits
