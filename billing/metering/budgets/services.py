"""Writes of budgets: set, change and remove them; record the thresholds their spending crossed and email them.

`budget_thresholds_crossed` is the one place where crossings are detected (after a debit committed: see
billing.metering.hooks.after_debit): each (budget, period, threshold) is recorded once, by the unique constraint of
BudgetAlert, and what it returns (the crossings new to this call) is what anything announcing them hangs off:
`budget_alerts_announce` runs after commit for them (the email to owners and billing admins).
"""

import logging
from datetime import datetime
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Now
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import ApiKey, ApiKeyAccess, Organization
from accounts.selectors import apikey_ref
from accounts.services import audit_record
from billing.metering import budgets
from billing.metering.budgets.selectors import budget_window
from billing.metering.errors import BudgetConflict, BudgetNotFound
from billing.metering.models import Budget, BudgetAlert, BudgetMode, BudgetPeriod, BudgetScope, BudgetSpend
from billing.notifications.selectors import notice_recipients
from billing.webhooks.models import EventType
from billing.webhooks.services import webhook_event_emit
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, format_amount, money_display

logger = logging.getLogger(__name__)

# Who changes a budget, as the audit log records it: a person, or a name for a script or a test.
Actor = AbstractBaseUser | AnonymousUser | str | None

MAX_THRESHOLDS = 10
MAX_THRESHOLD_PERCENT = 1000
WORKFLOW_MAX_LENGTH = 100


def _choice(value: object, choices: type[BudgetScope] | type[BudgetMode] | type[BudgetPeriod], *, param: str) -> str:
    if not isinstance(value, str) or value not in choices.values:
        raise ApplicationError(f"{param} must be one of: {', '.join(choices.values)}", param=param)
    return value


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApplicationError("the amount must be a whole number of nano-units", param="amount")
    if not 0 < value <= MAX_AMOUNT_NANO:
        raise ApplicationError(
            f"the amount must be greater than zero and at most {format_amount(MAX_AMOUNT_NANO)}", param="amount"
        )
    return value


def _thresholds(value: object) -> list[int]:
    """Percentages of the amount, each once, ascending: [50, 80, 100]. An empty list sends no alerts."""
    if not isinstance(value, list | tuple) or len(value) > MAX_THRESHOLDS:
        raise ApplicationError(
            f"thresholds must be a list of at most {MAX_THRESHOLDS} percentages, e.g. [50, 80, 100]",
            param="thresholds",
        )
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_THRESHOLD_PERCENT:
            raise ApplicationError(
                f"each threshold must be a whole percentage from 1 to {MAX_THRESHOLD_PERCENT}", param="thresholds"
            )
    return sorted(set(value))


def _workflow(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > WORKFLOW_MAX_LENGTH:
        raise ApplicationError(
            f"a workflow budget needs the workflow's name (1 to {WORKFLOW_MAX_LENGTH} characters)", param="workflow"
        )
    return value.strip()


def _snapshot(budget: Budget) -> dict[str, object]:
    return {
        "scope": budget.scope,
        "workflow": budget.workflow,
        "api_key_id": budget.api_key_id,
        "amount_nano": budget.amount_nano,
        "period": budget.period,
        "mode": budget.mode,
        "thresholds": list(budget.thresholds),
    }


def _saved(budget: Budget) -> Budget:
    try:
        with transaction.atomic():
            budget.save()
    except IntegrityError:
        raise BudgetConflict(
            f"there is already a budget per {budget.period} for this {budget.get_scope_display().lower()}; "
            "change that one",
            param="period",
        ) from None
    return budget


@transaction.atomic
def budget_create(
    *,
    organization_id: int,
    actor: Actor,
    scope: object,
    amount_nano: object,
    period: object,
    mode: object = BudgetMode.ALERT,
    thresholds: object = (50, 80, 100),
    workflow: object = "",
    api_key_id: object = None,
) -> Budget:
    """A budget for the organization, one of its workflows (`workflow`) or one of its API keys (`api_key_id`)."""
    if not Organization.objects.filter(pk=organization_id).exists():
        raise BudgetNotFound("organization not found", param="organization_id")
    scope = _choice(scope, BudgetScope, param="scope")
    budget = Budget(
        organization_id=organization_id,
        scope=scope,
        amount_nano=_amount(amount_nano),
        period=_choice(period, BudgetPeriod, param="period"),
        mode=_choice(mode, BudgetMode, param="mode"),
        thresholds=_thresholds(thresholds),
    )
    if scope == BudgetScope.WORKFLOW:
        budget.workflow = _workflow(workflow)
    elif scope == BudgetScope.API_KEY:
        if isinstance(api_key_id, bool) or not isinstance(api_key_id, int):
            raise ApplicationError("an API key budget needs the key's id", param="api_key_id")
        # Another organization's key reads exactly like an unknown one.
        access = ApiKey.objects.filter(pk=api_key_id, organization_id=organization_id).values_list("access", flat=True)
        if not access:
            raise BudgetNotFound("API key not found", param="api_key_id")
        if access[0] == ApiKeyAccess.ADMIN:
            raise ApplicationError(
                "an admin key reads billing data only and calls no model: it takes no budget", param="api_key_id"
            )
        budget.api_key_id = api_key_id
    _saved(budget)
    audit_record(
        actor=actor,
        action="budget.create",
        organization_id=organization_id,
        target=f"Budget:{budget.pk}",
        after=_snapshot(budget),
    )
    return budget


def _locked(*, organization_id: int, budget_id: int) -> Budget:
    budget = Budget.objects.select_for_update().filter(pk=budget_id, organization_id=organization_id).first()
    if budget is None:
        raise BudgetNotFound("budget not found", param="budget_id")
    return budget


@transaction.atomic
def budget_update(
    *,
    organization_id: int,
    budget_id: int,
    actor: Actor,
    amount_nano: object,
    period: object,
    mode: object,
    thresholds: object,
) -> Budget:
    """Change a budget's amount, period, mode and thresholds (its target stays). A lower amount refuses calls from
    now on; what is already held stays held until settled."""
    budget = _locked(organization_id=organization_id, budget_id=budget_id)
    before = _snapshot(budget)
    budget.amount_nano = _amount(amount_nano)
    budget.period = _choice(period, BudgetPeriod, param="period")
    budget.mode = _choice(mode, BudgetMode, param="mode")
    budget.thresholds = _thresholds(thresholds)
    budget.updated_at = Now()
    _saved(budget)
    budget.refresh_from_db(fields=["updated_at"])
    audit_record(
        actor=actor,
        action="budget.update",
        organization_id=organization_id,
        target=f"Budget:{budget.pk}",
        before=before,
        after=_snapshot(budget),
    )
    return budget


@transaction.atomic
def budget_delete(*, organization_id: int, budget_id: int, actor: Actor) -> None:
    """Remove a budget: calls in flight settle without it (their parts go with its counters)."""
    budget = _locked(organization_id=organization_id, budget_id=budget_id)
    before = _snapshot(budget)
    budget.delete()
    audit_record(
        actor=actor,
        action="budget.delete",
        organization_id=organization_id,
        target=f"Budget:{budget_id}",
        before=before,
    )


@transaction.atomic
def key_spend_limit_set(
    *, organization_id: int, api_key_id: int, actor: Actor, amount_nano: object, period: object
) -> Budget:
    """Set an API key's spend limit for a period: its hard budget for that period, made or changed (an alert-only
    budget of the key for that period becomes hard, keeping its thresholds). A new limit sends no alerts (no
    thresholds), as key limits never did; the budgets page adds some if wanted."""
    period = _choice(period, BudgetPeriod, param="period")
    existing = (
        Budget.objects.select_for_update()
        .filter(organization_id=organization_id, scope=BudgetScope.API_KEY, api_key_id=api_key_id, period=period)
        .first()
    )
    if existing is None:
        return budget_create(
            organization_id=organization_id,
            actor=actor,
            scope=BudgetScope.API_KEY,
            api_key_id=api_key_id,
            amount_nano=amount_nano,
            period=period,
            mode=BudgetMode.HARD,
            thresholds=[],
        )
    return budget_update(
        organization_id=organization_id,
        budget_id=existing.pk,
        actor=actor,
        amount_nano=amount_nano,
        period=period,
        mode=BudgetMode.HARD,
        thresholds=list(existing.thresholds),
    )


@transaction.atomic
def key_spend_limits_clear(*, organization_id: int, api_key_id: int, actor: Actor) -> int:
    """Remove an API key's spend limits (its hard budgets, every period); its alert-only budgets stay. Returns how
    many were removed."""
    ids = list(
        Budget.objects.filter(
            organization_id=organization_id, scope=BudgetScope.API_KEY, api_key_id=api_key_id, mode=BudgetMode.HARD
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for budget_id in ids:
        budget_delete(organization_id=organization_id, budget_id=budget_id, actor=actor)
    return len(ids)


@transaction.atomic
def budgets_follow_rotation(*, organization_id: int, old_key_id: int, new_key_id: int) -> int:
    """A rotated key's budgets move to its replacement, with their counters (what the period spent still counts):
    the replacement is the key from now on. Calls still made with the old key during the overlap count against the
    organization's and workflows' budgets only. Returns how many budgets moved."""
    return Budget.objects.filter(
        organization_id=organization_id, scope=BudgetScope.API_KEY, api_key_id=old_key_id
    ).update(api_key_id=new_key_id, updated_at=Now())


# --- charges without a hold -----------------------------------------------------------------------------------


def budget_charge(*, organization_id: int, api_key_id: int, workflow: str, amount_nano: int, at: datetime) -> int:
    """Count a charge that has no hold (a reported usage event, occurring at `at`) against every budget that covers
    it, inside the caller's transaction, after its debit. Returns how many budgets counted it; raises
    budgets.BudgetShort, having written nothing, when a hard budget does not leave room for it."""
    if amount_nano <= 0:
        return 0
    params = budgets.charge_params(
        organization_id=organization_id, api_key_id=api_key_id, workflow=workflow, amount_nano=amount_nano, at=at
    )
    # A savepoint: raising BudgetShort undoes what the statement counted on the other budgets; the caller's work
    # stands. The refused budget's counter was not touched, so it is read as it was.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(budgets.CHARGE, params)
        rows = cursor.fetchall()
        refused = next((row for row in rows if not row[7]), None)
        if refused is not None:
            budget_id, scope, budget_workflow, budget_key_id, period, amount, start, _counted = refused
            used = (
                BudgetSpend.objects.filter(budget_id=budget_id, window_start=start)
                .values_list("spent_nano", "held_nano")
                .first()
            )
            raise budgets.BudgetShort(
                budget_id=budget_id,
                scope=scope,
                workflow=budget_workflow,
                api_key_id=budget_key_id,
                period=period,
                amount_nano=amount,
                used_nano=sum(used) if used else 0,
                resets_at=budget_window(period=period, at=start)[1],
            )
    return len(rows)


# --- thresholds ---------------------------------------------------------------------------------------------------

# Every threshold that the current period's spending has reached, recorded unless it was before: the rows this
# statement inserts are the crossings new to it (two checks racing insert each crossing once between them).
CROSSED = """
WITH current AS (
    SELECT b.id, b.amount_nano, b.thresholds, s.window_start, s.spent_nano
      FROM metering_budget b
      JOIN metering_budgetspend s
        ON s.budget_id = b.id AND s.window_start = date_trunc(b.period, %(now)s::timestamptz, 'UTC')
     WHERE b.organization_id = %(organization_id)s AND cardinality(b.thresholds) > 0
)
INSERT INTO metering_budgetalert
       (budget_id, window_start, threshold_percent, amount_nano, spent_nano, created_at, recipients)
SELECT c.id, c.window_start, t.percent, c.amount_nano, c.spent_nano, now(), '[]'::jsonb
  FROM current c, unnest(c.thresholds) AS t(percent)
 WHERE c.spent_nano::numeric * 100 >= c.amount_nano::numeric * t.percent
    ON CONFLICT (budget_id, window_start, threshold_percent) DO NOTHING
RETURNING id
"""


@transaction.atomic
def budget_thresholds_crossed(*, organization_id: int, now: datetime | None = None) -> list[BudgetAlert]:
    """Record the thresholds of the organization's budgets that spending in their current period has crossed and
    that were not recorded before; announce them after commit (budget_alerts_announce). Returns the new ones."""
    with connection.cursor() as cursor:
        cursor.execute(CROSSED, {"organization_id": organization_id, "now": now or timezone.now()})
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    alerts = list(BudgetAlert.objects.filter(pk__in=ids).select_related("budget").order_by("threshold_percent"))
    transaction.on_commit(partial(budget_alerts_announce, alert_ids=ids), robust=True)
    return alerts


def budget_alerts_announce(*, alert_ids: list[int]) -> None:
    """What follows new crossings, after their commit: one email and the outbound webhook events per crossing
    (Celery, by id)."""
    from billing.metering.tasks import budget_alert_email_task, budget_alert_webhook_task  # they import this

    for alert_id in alert_ids:
        budget_alert_email_task.delay(alert_id)
        budget_alert_webhook_task.delay(alert_id)


def budget_alert_webhook_emit(*, alert_id: int) -> None:
    """The outbound webhook events of a crossing: `budget.threshold_crossed` for every threshold, and
    `budget.exceeded` too when the threshold is the whole budget (100 % or more). Once each per crossing."""
    alert = BudgetAlert.objects.select_related("budget__organization", "budget__api_key").get(pk=alert_id)
    budget = alert.budget
    _start, resets_at = budget_window(period=budget.period, at=alert.window_start)
    data = {
        "budget": {
            "id": budget.pk,
            "scope": budget.scope,
            "workflow": budget.workflow or None,
            "api_key_id": budget.api_key_id,
            "api_key": apikey_ref(budget.api_key) if budget.api_key else None,
            "period": budget.period,
            "mode": budget.mode,
            "amount": format_amount(alert.amount_nano),
            "amount_nano": alert.amount_nano,
            "currency": budget.organization.currency,
        },
        "threshold_percent": alert.threshold_percent,
        "spent": format_amount(alert.spent_nano),
        "spent_nano": alert.spent_nano,
        "period_start": alert.window_start.isoformat(),
        "resets_at": resets_at.isoformat(),
    }
    kinds = [EventType.BUDGET_THRESHOLD_CROSSED]
    if alert.threshold_percent >= 100:
        kinds.append(EventType.BUDGET_EXCEEDED)
    with transaction.atomic():
        for kind in kinds:
            webhook_event_emit(
                organization_id=budget.organization_id,
                event_type=kind,
                data=data,
                idempotency_key=f"{kind}:{alert.pk}",
            )


def _email_context(alert: BudgetAlert) -> dict[str, object]:
    budget = alert.budget
    currency = budget.organization.currency
    target: dict[str, str] = {
        BudgetScope.ORGANIZATION: "the organization",
        BudgetScope.WORKFLOW: f"workflow '{budget.workflow}'",
    }
    _start, resets_at = budget_window(period=budget.period, at=alert.window_start)
    return {
        "organization_name": budget.organization.name,
        "target": target.get(budget.scope, f"API key '{budget.api_key.name if budget.api_key else ''}'"),
        "percent": alert.threshold_percent,
        "period": budget.period,
        "mode": budget.get_mode_display(),
        "amount": money_display(alert.amount_nano, currency),
        "spent": money_display(alert.spent_nano, currency),
        "resets_at": resets_at,
        "budgets_url": f"{settings.SITE_URL.rstrip('/')}/budgets/",
    }


def budget_alert_email_send(*, alert_id: int) -> bool:
    """Email a crossing to the organization's owners and billing admins, once. True if this call sent it."""
    now = timezone.now()
    # The claim: of two workers sending the same alert, one updates the row and the other sees 0 rows.
    if not BudgetAlert.objects.filter(pk=alert_id, emailed_at__isnull=True).update(emailed_at=now):
        return False
    alert = BudgetAlert.objects.select_related("budget__organization", "budget__api_key").get(pk=alert_id)
    recipients = notice_recipients(organization_id=alert.budget.organization_id)
    if not recipients:
        return False
    context = _email_context(alert)
    subject = render_to_string("web/email/budget_threshold_subject.txt", context)
    body = render_to_string("web/email/budget_threshold_message.txt", context)
    try:
        send_mail(settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + " ".join(subject.split()), body, None, recipients)
    except Exception:
        logger.exception("budget alert %s: the email could not be sent; the task retries", alert_id)
        BudgetAlert.objects.filter(pk=alert_id, emailed_at=now).update(emailed_at=None)
        raise
    BudgetAlert.objects.filter(pk=alert_id).update(recipients=recipients)
    return True


@transaction.atomic
def budget_spend_sweep() -> int:
    """Free the parts of calls that never settled because their ledger hold expired."""
    with connection.cursor() as cursor:
        cursor.execute(budgets.SWEEP)
        return cursor.rowcount
