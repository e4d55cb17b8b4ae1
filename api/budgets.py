"""The JSON of a budget and its current period, the same for GET /v1/budgets (API keys) and the customer REST
endpoints under /api/budgets/ (web sessions): amounts as decimal strings in the currency's main unit with their
nano-unit integers beside them."""

from typing import Any

from accounts.selectors import apikey_ref
from billing.metering.budgets.selectors import BudgetState
from core.money import format_amount


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def budget_json(state: BudgetState, *, currency: str) -> dict[str, Any]:
    budget = state.budget
    return {
        "object": "budget",
        "id": budget.pk,
        "scope": budget.scope,
        "workflow": budget.workflow or None,
        "api_key_id": budget.api_key_id,
        "api_key": apikey_ref(budget.api_key) if budget.api_key else None,
        "period": budget.period,
        "mode": budget.mode,
        "thresholds": list(budget.thresholds),
        "currency": currency,
        "amount": format_amount(budget.amount_nano),
        "amount_nano": budget.amount_nano,
        "current_period": {
            "start": _iso(state.window_start),
            "resets_at": _iso(state.resets_at),
            "spent": format_amount(state.spent_nano),
            "spent_nano": state.spent_nano,
            "held": format_amount(state.held_nano),
            "held_nano": state.held_nano,
            "left": format_amount(state.left_nano),
            "left_nano": state.left_nano,
            "percent_spent": state.percent_spent,
        },
    }
