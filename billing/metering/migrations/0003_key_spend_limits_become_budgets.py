"""API keys' spend limits become hard budgets of their keys (billing.metering.models.Budget), and their own counters
(KeySpend, KeySpendHold: the tables api_keyspend and api_keyspendhold) go.

Each key with a limit gets a hard budget of scope api_key for the limit's period, with no thresholds (limits were
never emailed). A key that already has a budget for that period keeps it, made hard, with the smaller of the two
amounts and its own thresholds. What the key spent in the current period carries into the budget's counter for it
(the larger of the two figures: both counted the key's calls), and the parts of requests still in flight carry
with it (BudgetSpendHold, and the counter's held_nano), so that their settle, which deletes the budget parts of
its request, frees them, and the sweeper frees those whose hold expires. Runs before the accounts migration that
drops ApiKey.spend_limit_nano and spend_limit_period.
"""

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import migrations
from django.utils import timezone


def window_start(period: str, at: datetime) -> datetime:
    """The start of the calendar period (UTC) containing `at` (weeks start on Monday), as the budgets count it
    (billing.metering.budgets.selectors.budget_window; written again here so the migration never changes)."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    assert period == "month", period
    return day.replace(day=1)


def limits_to_budgets(apps: Any, *, now: datetime) -> int:
    """Move every key's spend limit, its current spending and its requests in flight onto a hard budget of the key.
    Returns the number of keys moved."""
    ApiKey = apps.get_model("accounts", "ApiKey")
    Budget = apps.get_model("metering", "Budget")
    BudgetSpend = apps.get_model("metering", "BudgetSpend")
    BudgetSpendHold = apps.get_model("metering", "BudgetSpendHold")
    KeySpend = apps.get_model("metering", "KeySpend")
    KeySpendHold = apps.get_model("metering", "KeySpendHold")
    moved = 0
    for key in ApiKey.objects.filter(spend_limit_nano__isnull=False).order_by("id"):
        period = key.spend_limit_period
        budget = Budget.objects.filter(
            organization_id=key.organization_id, scope="api_key", workflow="", api_key_id=key.pk, period=period
        ).first()
        if budget is None:
            budget = Budget.objects.create(
                organization_id=key.organization_id,
                scope="api_key",
                api_key_id=key.pk,
                amount_nano=key.spend_limit_nano,
                period=period,
                mode="hard",
                thresholds=[],
            )
        else:
            budget.mode = "hard"
            budget.amount_nano = min(budget.amount_nano, key.spend_limit_nano)
            budget.updated_at = now
            budget.save(update_fields=["mode", "amount_nano", "updated_at"])
        current = window_start(period, now)
        for key_spend in KeySpend.objects.filter(api_key_id=key.pk).order_by("window_start"):
            start = window_start(period, key_spend.window_start)
            holds = list(KeySpendHold.objects.filter(key_spend_id=key_spend.pk))
            if start != current and not holds:
                continue  # a past period: its history is in the usage records
            counter, _ = BudgetSpend.objects.get_or_create(budget_id=budget.pk, window_start=start)
            if start == current:
                counter.spent_nano = max(counter.spent_nano, key_spend.spent_nano)
            for hold in holds:
                # A budget that covered the request already (a hard key budget beside the limit) holds it already.
                if not BudgetSpendHold.objects.filter(budget_spend_id=counter.pk, request_id=hold.request_id).exists():
                    BudgetSpendHold.objects.create(
                        budget_spend_id=counter.pk, request_id=hold.request_id, amount_nano=hold.amount_nano
                    )
                    counter.held_nano += hold.amount_nano
            counter.updated_at = now
            counter.save(update_fields=["spent_nano", "held_nano", "updated_at"])
        moved += 1
    return moved


def forwards(apps: Any, schema_editor: Any) -> None:
    limits_to_budgets(apps, now=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_apikey_rate_limits"),
        ("metering", "0002_budgets"),
    ]

    operations = [
        # Going back leaves the budgets as they are: they enforce what the limits did.
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.DeleteModel(name="KeySpendHold"),
        migrations.DeleteModel(name="KeySpend"),
    ]
