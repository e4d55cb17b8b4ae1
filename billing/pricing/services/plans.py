"""Plans and subscriptions: create and edit plans, subscribe, renew, cancel. Changing plan mid-period is in
plan_changes.

Fees are paid from prepaid credit with the ledger's `wallet_debit`, under idempotency keys derived from the
subscription and period, so a retried renewal never charges twice. Each period, renewal and change leaves a
SubscriptionPeriod row with the fee and proration amounts, which invoicing reads.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from billing.ledger import services as ledger
from billing.ledger.errors import InsufficientCredit
from billing.ledger.models import JournalTransaction
from billing.pricing import periods
from billing.pricing.errors import PricingConflict, PricingNotFound
from billing.pricing.models import (
    LIVE_STATUSES,
    CounterKind,
    PeriodCounter,
    PeriodKind,
    Plan,
    PlanAllowance,
    PlanInterval,
    Subscription,
    SubscriptionPeriod,
    SubscriptionStatus,
)
from billing.pricing.services import counters, validation
from billing.pricing.services.catalog import _full_clean, _user
from billing.pricing.services.scope import scope_resolve
from core.errors import ApplicationError

MONEY_TERMS = ("interval", "fee_nano", "currency", "included_credit_nano", "usage_discount_bps")
OTHER_TERMS = ("name", "description", "requests_per_minute", "tokens_per_minute", "is_active")


@dataclass(frozen=True)
class AllowanceSpec:
    included_tokens: int
    rollover_cap_tokens: int = 0
    model: str | None = None
    group: str | None = None


def _allowances_set(plan: Plan, allowances: list[AllowanceSpec]) -> None:
    plan.allowances.all().delete()
    seen: set[str] = set()
    for index, spec in enumerate(allowances):
        model, group = scope_resolve(model_slug=spec.model, group=spec.group)
        allowance = PlanAllowance(
            plan=plan,
            model=model,
            group=group,
            included_tokens=validation.tokens(
                spec.included_tokens, param=f"allowances[{index}].included_tokens", minimum=1
            ),
            rollover_cap_tokens=validation.tokens(
                spec.rollover_cap_tokens, param=f"allowances[{index}].rollover_cap_tokens"
            ),
        )
        if allowance.scope_key in seen:
            raise ApplicationError(
                f"The plan already includes tokens for {allowance.scope_label}.",
                param=f"allowances[{index}]",
                code="duplicate_allowance",
            )
        seen.add(allowance.scope_key)
        allowance.save()


def _plan_terms_check(values: dict[str, Any]) -> None:
    if "fee_nano" in values:
        validation.amount(values["fee_nano"], param="fee_nano")
    if "included_credit_nano" in values:
        validation.amount(values["included_credit_nano"], param="included_credit_nano")
    if "usage_discount_bps" in values:
        validation.bps(values["usage_discount_bps"], param="usage_discount_bps")
    for field in ("requests_per_minute", "tokens_per_minute"):
        if values.get(field) is not None:
            validation.whole(values[field], param=field, minimum=1, maximum=2**31 - 1)
    if "interval" in values and values["interval"] not in PlanInterval.values:
        raise ApplicationError("interval must be month or year.", param="interval", code="invalid_value")


def _plan_detail(plan: Plan) -> dict[str, Any]:
    detail: dict[str, Any] = {f: getattr(plan, f) for f in (*MONEY_TERMS, *OTHER_TERMS)}
    detail["allowances"] = [
        {"scope": a.scope_key, "included_tokens": a.included_tokens, "rollover_cap_tokens": a.rollover_cap_tokens}
        for a in plan.allowances.select_related("model")
    ]
    return detail


def _plan_audit(plan: Plan, action: str, *, actor: Any, before: dict[str, Any] | None) -> None:
    """An audit entry of `plan`: its terms and allowances as they are now, and before."""
    detail = _plan_detail(plan)
    audit_record(
        actor=actor,
        action=action,
        target=f"Plan:{plan.slug}",
        target_label=f"plan {plan.name} ({plan.slug})",
        detail=detail,
        before=before,
        after=detail,
    )


@transaction.atomic
def plan_create(
    *,
    slug: str,
    name: str,
    fee_nano: int,
    interval: str = PlanInterval.MONTH,
    allowances: list[AllowanceSpec] | None = None,
    actor: Any = None,
    **terms: Any,
) -> Plan:
    values = {"fee_nano": fee_nano, "interval": interval, **{k: v for k, v in terms.items() if k in MONEY_TERMS}}
    values |= {k: v for k, v in terms.items() if k in OTHER_TERMS}
    _plan_terms_check(values)
    if Plan.objects.filter(slug=slug).exists():
        raise PricingConflict(f"A plan with id '{slug}' already exists.", param="slug")
    plan = Plan(slug=slug, name=name, created_by=_user(actor), **values)
    _full_clean(plan)
    plan.save()
    _allowances_set(plan, allowances or [])
    _plan_audit(plan, "pricing.plan.create", actor=actor, before=None)
    return plan


@transaction.atomic
def plan_update(
    *, plan_slug: str, actor: Any = None, allowances: list[AllowanceSpec] | None = None, **terms: Any
) -> Plan:
    """Change a plan. Its money terms and included tokens are what its subscribers signed up for: once it has
    any, only its name, description, rate limits and whether it is offered can change."""
    plan = Plan.objects.select_for_update().filter(slug=plan_slug).first()
    if plan is None:
        raise PricingNotFound(f"The plan '{plan_slug}' does not exist.", param="plan")
    changing_money = [k for k in terms if k in MONEY_TERMS and terms[k] != getattr(plan, k)]
    if (changing_money or allowances is not None) and plan.subscriptions.exists():
        raise PricingConflict(
            f"The plan '{plan_slug}' has subscribers, so its fee, interval, discount and included tokens or credit "
            "cannot change; create a new plan and retire this one.",
            param=changing_money[0] if changing_money else "allowances",
        )
    _plan_terms_check(terms)
    before = _plan_detail(plan)
    for key, value in terms.items():
        if key in MONEY_TERMS or key in OTHER_TERMS:
            setattr(plan, key, value)
    _full_clean(plan)
    plan.save()
    if allowances is not None:
        _allowances_set(plan, allowances)
    _plan_audit(plan, "pricing.plan.update", actor=actor, before=before)
    return plan


def _step_months(plan: Plan) -> int:
    return periods.MONTHS[plan.interval]


def _period_key(subscription: Subscription, period_start: datetime) -> str:
    return f"subscription:{subscription.pk}:period:{period_start.isoformat()}"


def plan_fee_debit(*, record: SubscriptionPeriod, actor: Any) -> JournalTransaction:
    """Pay a started or renewed period's fee from credit, under the period's key (a retry never pays twice);
    InsufficientCredit propagates."""
    return ledger.wallet_debit(
        organization_id=record.organization_id,
        amount_nano=record.fee_nano,
        idempotency_key=f"plan-fee:{_period_key(record.subscription, record.period_start)}",
        actor=actor,
        reason=f"{record.plan.name} plan, {record.period_start:%Y-%m-%d} to {record.period_end:%Y-%m-%d}",
        category="plan_fee",
    )


def _quota_counters_open(
    subscription: Subscription,
    plan: Plan,
    period_start: datetime,
    period_end: datetime,
    rollovers: dict[str, int],
) -> None:
    """The period's quota counters of `plan`'s allowances (plus each scope's rollover), in lock order: models'
    before groups'."""
    for allowance in sorted(plan.allowances.select_related("model"), key=lambda a: (a.group != "", a.scope_key)):
        rollover = rollovers.get(allowance.scope_key, 0)
        counters.counter_open(
            organization_id=subscription.organization_id,
            kind=CounterKind.QUOTA,
            owner_id=subscription.pk,
            scope_key=allowance.scope_key,
            period_start=period_start,
            period_end=period_end,
            limit_tokens=allowance.included_tokens + rollover,
            rollover_tokens=rollover,
        )


def _open_period(
    *,
    subscription: Subscription,
    plan: Plan,
    kind: str,
    period_start: datetime,
    period_end: datetime,
    rollovers: dict[str, int],
    actor: Any,
    fee_invoiced_at: datetime | None = None,
) -> SubscriptionPeriod:
    """Counters, fee and included credit of a new period, in lock order (counters before the wallet). With
    `fee_invoiced_at` the fee is not taken from credit: it is on the organization's invoice (see services.fees)."""
    _quota_counters_open(subscription, plan, period_start, period_end, rollovers)
    record = SubscriptionPeriod(
        subscription=subscription,
        organization_id=subscription.organization_id,
        plan=plan,
        kind=kind,
        period_start=period_start,
        period_end=period_end,
        starts_at=period_start,
        plan_fee_nano=plan.fee_nano,
        fee_nano=plan.fee_nano,
        created_by=_user(actor),
        invoiced_at=fee_invoiced_at if plan.fee_nano else None,
    )
    key = _period_key(subscription, period_start)
    if plan.fee_nano and fee_invoiced_at is None:
        record.debit_transaction_id = plan_fee_debit(record=record, actor=actor).pk
    if plan.included_credit_nano and period_end > timezone.now():  # a period renewed late may be over already
        grant = ledger.grant_create(
            organization_id=subscription.organization_id,
            kind="plan_allowance",
            amount_nano=plan.included_credit_nano,
            idempotency_key=f"plan-allowance:{key}",
            actor=actor,
            expires_at=period_end,
            reason=f"credit included in the {plan.name} plan until {period_end:%Y-%m-%d}",
            source_ref=f"subscription:{subscription.pk}",
        )
        record.allowance_grant_id = grant.grant.pk
    record.save()
    return record


@transaction.atomic
def subscription_create(
    *, organization_id: int, plan_slug: str, actor: Any = None, at: datetime | None = None
) -> Subscription:
    """Subscribe an organization to a plan from `at` (now): the first fee is paid from credit at once
    (InsufficientCredit, 402, when credit does not cover it, and nothing is written)."""
    at = at or timezone.now()
    # Subscriptions of one organization are created one at a time (the organization's row is their lock).
    if not Organization.objects.select_for_update().filter(pk=organization_id).exists():
        raise PricingNotFound(f"No organization {organization_id}.", param="organization")
    plan = Plan.objects.filter(slug=plan_slug).first()
    if plan is None:
        raise PricingNotFound(f"The plan '{plan_slug}' does not exist.", param="plan")
    if not plan.is_active:
        raise PricingConflict(f"The plan '{plan_slug}' is no longer offered.", param="plan")
    if Subscription.objects.filter(organization_id=organization_id, status__in=LIVE_STATUSES).exists():
        raise PricingConflict(
            "The organization already has a subscription; change its plan instead.", param="organization"
        )
    end = periods.add_months(at, _step_months(plan))
    subscription = Subscription.objects.create(
        organization_id=organization_id,
        plan=plan,
        billing_anchor=at,
        current_period_start=at,
        current_period_end=end,
        started_at=at,
        created_by=_user(actor),
    )
    _open_period(
        subscription=subscription,
        plan=plan,
        kind=PeriodKind.START,
        period_start=at,
        period_end=end,
        rollovers={},
        actor=actor,
    )
    audit_record(
        actor=actor,
        action="pricing.subscription.create",
        organization_id=organization_id,
        target=f"Subscription:{subscription.pk}",
        target_label=f"subscription #{subscription.pk} to {plan.name} ({plan.slug})",
        detail={"plan": plan.slug, "period_start": at.isoformat(), "period_end": end.isoformat()},
        before=None,
        after={"plan": plan.slug, "status": subscription.status, "current_period_end": end},
    )
    return subscription


def _close_quota_counters(subscription: Subscription, period_start: datetime, now: datetime, plan: Plan | None):
    """Close the period's quota counters (use-or-lose); returns each scope's rollover under `plan`'s caps."""
    caps = {a.scope_key: a.rollover_cap_tokens for a in plan.allowances.select_related("model")} if plan else {}
    rows = counters.locked(
        PeriodCounter.objects.filter(kind=CounterKind.QUOTA, owner_id=subscription.pk, period_start=period_start)
    )
    return {
        row.scope_key: counters.counter_close(row, now=now, rollover_cap_tokens=caps.get(row.scope_key, 0))
        for row in rows
    }


def _end(subscription: Subscription, *, now: datetime, reason: str) -> None:
    _close_quota_counters(subscription, subscription.current_period_start, now, None)
    subscription.status = SubscriptionStatus.ENDED
    subscription.ended_at = now
    subscription.save(update_fields=["status", "ended_at"])
    audit_record(
        actor=None,
        action="pricing.subscription.end",
        organization_id=subscription.organization_id,
        target=f"Subscription:{subscription.pk}",
        reason=reason,
    )


def _renew(subscription: Subscription, *, now: datetime, fee_invoiced_at: datetime | None = None) -> None:
    """Start the next period of `subscription` (locked): the old period's quota closes (unused tokens expire, up to
    each allowance's rollover cap carry over), the new one opens, and its fee is paid (or invoiced)."""
    plan = subscription.plan
    start = subscription.current_period_end
    _, end = periods.anchored_period(subscription.billing_anchor, _step_months(plan), start)
    rollovers = _close_quota_counters(subscription, subscription.current_period_start, now, plan)
    _open_period(
        subscription=subscription,
        plan=plan,
        kind=PeriodKind.RENEWAL,
        period_start=start,
        period_end=end,
        rollovers=rollovers,
        actor=None,
        fee_invoiced_at=fee_invoiced_at,
    )
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.save(update_fields=["current_period_start", "current_period_end", "status"])


def subscription_renew(*, subscription_id: int, now: datetime | None = None) -> str:
    """Start the next period of a subscription whose period has ended, paying its fee from credit.

    Returns what happened: "renewed", "ended" (cancelled at period end), "past_due" (credit did not cover the fee:
    retried on the next run, and put on the invoice when the organization's billing period closes, see
    subscription_renew_invoiced) or "not_due".
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            subscription = (
                Subscription.objects.select_for_update(of=("self",)).select_related("plan").get(pk=subscription_id)
            )
            if subscription.status == SubscriptionStatus.ENDED or subscription.current_period_end > now:
                return "not_due"
            if subscription.cancel_at_period_end:
                _end(subscription, now=now, reason="cancelled at the end of its period")
                return "ended"
            _renew(subscription, now=now)
            return "renewed"
    except InsufficientCredit:
        with transaction.atomic():
            subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
            if subscription.status != SubscriptionStatus.PAST_DUE:
                subscription.status = SubscriptionStatus.PAST_DUE
                subscription.save(update_fields=["status"])
                audit_record(
                    actor=None,
                    action="pricing.subscription.past_due",
                    organization_id=subscription.organization_id,
                    target=f"Subscription:{subscription.pk}",
                    reason="not enough credit for the renewal fee",
                )
            return "past_due"


def subscription_renew_invoiced(*, subscription_id: int, now: datetime | None = None) -> bool:
    """The organization's billing period closes: a subscription past due for its renewal fee is renewed with the
    fee left to its invoice (paid when the invoice is, see services.fees.fee_settle), so the plan stays in force
    while the invoice is collected instead of lapsing. True if it was renewed so."""
    now = now or timezone.now()
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",)).select_related("plan").get(pk=subscription_id)
        )
        if subscription.status != SubscriptionStatus.PAST_DUE or subscription.current_period_end > now:
            return False
        _renew(subscription, now=now, fee_invoiced_at=now)
        audit_record(
            actor=None,
            action="pricing.subscription.renew_invoiced",
            organization_id=subscription.organization_id,
            target=f"Subscription:{subscription.pk}",
            reason="renewal fee not covered by credit: put on the invoice",
        )
        return True


def subscriptions_renew(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The renewal task: renew every live subscription whose period has ended (repeatedly, if it missed more
    than one)."""
    now = now or timezone.now()
    outcomes: dict[str, int] = {}
    due = Subscription.objects.filter(status__in=LIVE_STATUSES, current_period_end__lte=now).order_by("id")
    for subscription_id in due.values_list("id", flat=True)[:limit]:
        for _ in range(24):  # a year of missed monthly periods at most, per run
            outcome = subscription_renew(subscription_id=subscription_id, now=now)
            if outcome != "not_due":
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != "renewed":
                break
    return outcomes


def _locked_live(subscription_id: int) -> Subscription:
    subscription = (
        Subscription.objects.select_for_update(of=("self",)).select_related("plan").filter(pk=subscription_id).first()
    )
    if subscription is None:
        raise PricingNotFound(f"No subscription {subscription_id}.", param="subscription")
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise PricingConflict(f"Subscription {subscription_id} is {subscription.status}.", param="subscription")
    return subscription


@transaction.atomic
def subscription_cancel(*, subscription_id: int, actor: Any = None, reason: str = "") -> Subscription:
    """Cancel at the end of the current period (the fee is paid for it; no refund)."""
    subscription = _locked_live(subscription_id)
    subscription.cancel_at_period_end = True
    subscription.save(update_fields=["cancel_at_period_end"])
    audit_record(
        actor=actor,
        action="pricing.subscription.cancel",
        organization_id=subscription.organization_id,
        target=f"Subscription:{subscription.pk}",
        target_label=f"subscription #{subscription.pk} to {subscription.plan.name} ({subscription.plan.slug})",
        reason=reason,
        detail={"ends_at": subscription.current_period_end.isoformat()},
        before={"cancel_at_period_end": False},
        after={"cancel_at_period_end": True, "ends_at": subscription.current_period_end},
    )
    return subscription
