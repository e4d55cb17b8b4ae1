"""Changing a subscription's plan mid-period, with proration.

Proration (a change of plan at time t within the period [start, end)): the new plan's fee for the rest of the
period, new_fee x (end - t) / (end - start), is charged; the unused part of what was paid for the old plan is
credited; both rounded down to the nano-unit (times in microseconds). The difference is debited (upgrade) or
granted back as refund credit (downgrade).

What was paid for the old plan bought time, its included tokens and its included credit. The credit is the
smallest unused share of the three: old_fee x (end - t) / (end - start) by the calendar, but no more than the
paid fee x the unused share of the included tokens of any scope, or of the included credit, granted when the
old plan started (or was last changed to). So tokens or credit used early are paid for, and switching away
and back never hands out included tokens or credit that the refund already paid back.

Included tokens of the new plan are prorated like its fee and added to what was used (and to rollover not yet
used), so tokens already used stay used and the old plan's unused included tokens are not kept. Changing
between monthly and annual billing starts a new period at t instead (credit for the old, the whole new fee).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from billing.ledger import services as ledger
from billing.ledger.models import Grant
from billing.pricing import periods
from billing.pricing.errors import PricingConflict, PricingNotFound
from billing.pricing.models import CounterKind, PeriodCounter, PeriodKind, Plan, Subscription, SubscriptionPeriod
from billing.pricing.services import counters
from billing.pricing.services.catalog import _user
from billing.pricing.services.plans import _close_quota_counters, _locked_live, _quota_counters_open, _step_months
from core.errors import ApplicationError


@dataclass(frozen=True)
class Proration:
    credit_nano: int  # the unused part of the old plan's fee
    charge_nano: int  # the new plan's fee for the rest of the period
    remaining_micros: int
    period_micros: int

    @property
    def net_nano(self) -> int:
        """Positive: the organization pays it; negative: it gets it back as credit."""
        return self.charge_nano - self.credit_nano


def proration_compute(
    *, old_fee_nano: int, new_fee_nano: int, period_start: datetime, period_end: datetime, at: datetime
) -> Proration:
    """The proration of a plan change at `at` within [period_start, period_end) (see the module doc)."""
    remaining, length = periods.fraction_remaining(period_start, period_end, at)
    return Proration(
        credit_nano=periods.prorate(old_fee_nano, remaining, length),
        charge_nano=periods.prorate(new_fee_nano, remaining, length),
        remaining_micros=remaining,
        period_micros=length,
    )


def _unused_share_of_paid(subscription: Subscription, current: SubscriptionPeriod | None, old_plan: Plan) -> int:
    """The most a change may credit back by what was used (module doc): the fee paid for the old plan's current
    stretch x the smallest unused share of the included tokens (per scope) and included credit it granted."""
    start, end = subscription.current_period_start, subscription.current_period_end
    paid = current.fee_nano if current is not None else old_plan.fee_nano
    stretch_start = current.starts_at if current is not None else start
    stretch = periods.fraction_remaining(start, end, stretch_start)
    cap = paid
    granted = {
        a.scope_key: periods.prorate(a.included_tokens, *stretch) for a in old_plan.allowances.select_related("model")
    }
    rows = counters.locked(
        PeriodCounter.objects.filter(kind=CounterKind.QUOTA, owner_id=subscription.pk, period_start=start)
    )
    for row in rows:
        tokens = granted.get(row.scope_key, 0)
        if tokens <= 0 or row.limit_tokens is None:
            continue
        # Claims draw the rollover first, so what is left beyond the unused rollover is the included tokens.
        unused = row.limit_tokens - row.used_tokens - max(row.rollover_tokens - row.used_tokens, 0)
        cap = min(cap, periods.prorate(paid, min(max(unused, 0), tokens), tokens))
    if current is not None and current.allowance_grant_id:
        grant = Grant.objects.filter(pk=current.allowance_grant_id).first()
        if grant is not None and grant.amount_nano > 0:
            cap = min(cap, periods.prorate(paid, grant.remaining_nano, grant.amount_nano))
    return cap


def _rebase_quota(subscription: Subscription, new_plan: Plan, remaining: int, length: int) -> None:
    """Included tokens for the rest of the period under the new plan (see the module doc), in lock order."""
    included = {
        a.scope_key: periods.prorate(a.included_tokens, remaining, length)
        for a in new_plan.allowances.select_related("model")
    }
    rows = counters.locked(
        PeriodCounter.objects.filter(
            kind=CounterKind.QUOTA, owner_id=subscription.pk, period_start=subscription.current_period_start
        )
    )
    for row in rows:
        unused_rollover = max(row.rollover_tokens - row.used_tokens, 0)
        row.limit_tokens = row.used_tokens + unused_rollover + included.pop(row.scope_key, 0)
        row.save(update_fields=["limit_tokens"])
    for scope, tokens in sorted(included.items(), key=lambda item: (item[0].startswith("group:"), item[0])):
        counters.counter_open(
            organization_id=subscription.organization_id,
            kind=CounterKind.QUOTA,
            owner_id=subscription.pk,
            scope_key=scope,
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
            limit_tokens=tokens,
        )


@dataclass(frozen=True)
class ChangeTerms:
    """What a change to `new_plan` at `at` costs and the stretch it starts (see the module doc)."""

    proration: Proration  # credit_nano already capped by what was used of the old plan
    charge_nano: int
    period_start: datetime
    period_end: datetime
    same_interval: bool


def _change_check(subscription: Subscription, new_plan: Plan | None, plan_slug: str, at: datetime) -> Plan:
    if new_plan is None:
        raise PricingNotFound(f"The plan '{plan_slug}' does not exist.", param="plan")
    if new_plan.pk == subscription.plan_id:
        raise PricingConflict(f"The subscription is already on the plan '{plan_slug}'.", param="plan")
    if not new_plan.is_active:
        raise PricingConflict(f"The plan '{plan_slug}' is no longer offered.", param="plan")
    if not subscription.current_period_start <= at < subscription.current_period_end:
        raise ApplicationError("A plan can only change within the current period.", param="at")
    return new_plan


def _current_stretch(subscription: Subscription) -> SubscriptionPeriod | None:
    """The fee record of the plan in force now (locked): what a change supersedes."""
    return (
        SubscriptionPeriod.objects.select_for_update()
        .filter(subscription=subscription, period_start=subscription.current_period_start, superseded_at__isnull=True)
        .order_by("-starts_at", "-id")
        .first()
    )


def change_terms(
    subscription: Subscription, current: SubscriptionPeriod | None, new_plan: Plan, at: datetime
) -> ChangeTerms:
    """The one computation of a change's amounts: the change charges exactly this, and previews show it. Reads
    the quota counters under lock, so call it inside the transaction that holds the subscription's lock."""
    old_plan = subscription.plan
    start, end = subscription.current_period_start, subscription.current_period_end
    proration = proration_compute(
        old_fee_nano=old_plan.fee_nano, new_fee_nano=new_plan.fee_nano, period_start=start, period_end=end, at=at
    )
    # Before the counters are rebased: what of the old plan's included tokens and credit is still unused.
    proration = replace(
        proration, credit_nano=min(proration.credit_nano, _unused_share_of_paid(subscription, current, old_plan))
    )
    if new_plan.interval == old_plan.interval:
        return ChangeTerms(proration, proration.charge_nano, start, end, same_interval=True)
    # Monthly <-> annual: the old period stops at `at` and a new one, anchored there, begins with the whole fee.
    return ChangeTerms(
        proration, new_plan.fee_nano, at, periods.add_months(at, _step_months(new_plan)), same_interval=False
    )


@transaction.atomic
def subscription_change(
    *,
    subscription_id: int,
    plan_slug: str,
    actor: Any = None,
    at: datetime | None = None,
    expect: Callable[[ChangeTerms, SubscriptionPeriod | None], None] | None = None,
) -> SubscriptionPeriod:
    """Move a subscription to another plan at `at` (now), prorating fee and included tokens (module doc).

    `expect` sees the terms and the plan record being superseded before anything is written, and raises to
    refuse them (a confirmation that no longer matches its preview)."""
    at = at or timezone.now()
    subscription = _locked_live(subscription_id)
    new_plan = _change_check(subscription, Plan.objects.filter(slug=plan_slug).first(), plan_slug, at)
    old_plan = subscription.plan
    current = _current_stretch(subscription)
    terms = change_terms(subscription, current, new_plan, at)
    if expect is not None:
        expect(terms, current)
    proration, same_interval = terms.proration, terms.same_interval
    new_start, new_end, charge = terms.period_start, terms.period_end, terms.charge_nano
    if same_interval:
        _rebase_quota(subscription, new_plan, proration.remaining_micros, proration.period_micros)
    else:
        _close_quota_counters(subscription, subscription.current_period_start, at, None)
        _quota_counters_open(subscription, new_plan, new_start, new_end, {})
    if current is not None:
        current.superseded_at = at
        current.save(update_fields=["superseded_at"])
    record = SubscriptionPeriod(
        subscription=subscription,
        organization_id=subscription.organization_id,
        plan=new_plan,
        kind=PeriodKind.CHANGE,
        period_start=new_start,
        period_end=new_end,
        starts_at=at,
        plan_fee_nano=new_plan.fee_nano,
        fee_nano=charge,
        credit_nano=proration.credit_nano,
        created_by=_user(actor),
    )
    record.save()
    key = f"subscription:{subscription.pk}:change:{record.pk}"
    net = charge - proration.credit_nano
    reason = f"plan change {old_plan.slug} -> {new_plan.slug} on {at:%Y-%m-%d %H:%M} UTC"
    if net > 0:
        debit = ledger.wallet_debit(
            organization_id=subscription.organization_id,
            amount_nano=net,
            idempotency_key=f"plan-fee:{key}",
            actor=actor,
            reason=reason,
            category="plan_fee",
        )
        record.debit_transaction_id = debit.pk
    elif net < 0:
        grant = ledger.grant_create(
            organization_id=subscription.organization_id,
            kind="refund",
            amount_nano=-net,
            idempotency_key=f"plan-proration:{key}",
            actor=actor,
            reason=f"unused part of the {old_plan.name} plan fee ({reason})",
            source_ref=f"subscription:{subscription.pk}",
        )
        record.credit_grant_id = grant.grant.pk
    record.allowance_grant_id = _included_credit_swap(
        subscription, current, old_plan, new_plan, proration, new_end, key, actor, same_interval
    )
    record.save(update_fields=["debit_transaction_id", "credit_grant_id", "allowance_grant_id"])
    subscription.plan = new_plan
    if not same_interval:
        subscription.billing_anchor = new_start
    subscription.current_period_start, subscription.current_period_end = new_start, new_end
    subscription.save(update_fields=["plan", "billing_anchor", "current_period_start", "current_period_end"])
    audit_record(
        actor=actor,
        action="pricing.subscription.change",
        organization_id=subscription.organization_id,
        target=f"Subscription:{subscription.pk}",
        target_label=f"subscription #{subscription.pk}",
        before={"plan": old_plan.slug},
        after={"plan": new_plan.slug, "current_period_end": new_end},
        detail={
            "from": old_plan.slug,
            "to": new_plan.slug,
            "at": at.isoformat(),
            "fee_nano": charge,
            "credit_nano": proration.credit_nano,
        },
    )
    return record


def _included_credit_swap(
    subscription: Subscription,
    current: SubscriptionPeriod | None,
    old_plan: Plan,
    new_plan: Plan,
    proration: Proration,
    period_end: datetime,
    key: str,
    actor: Any,
    same_interval: bool,
) -> int | None:
    """Take back the old plan's included credit for the rest of the period (what is left of it, as far as it is
    available) and grant the new plan's, prorated; returns the new grant's id."""
    if current is not None and current.allowance_grant_id:
        grant = Grant.objects.filter(pk=current.allowance_grant_id).select_related("wallet").first()
        if grant is not None:
            share = periods.prorate(old_plan.included_credit_nano, proration.remaining_micros, proration.period_micros)
            take = min(share, grant.remaining_nano, max(grant.wallet.available_nano, 0))
            if take > 0:
                ledger.grant_reverse(
                    grant_id=grant.pk,
                    amount_nano=take,
                    idempotency_key=f"plan-allowance-back:{key}",
                    actor=actor,
                    reason="plan changed: the old plan's included credit ends",
                )
    amount = (
        periods.prorate(new_plan.included_credit_nano, proration.remaining_micros, proration.period_micros)
        if same_interval
        else new_plan.included_credit_nano
    )
    if amount <= 0:
        return None
    granted = ledger.grant_create(
        organization_id=subscription.organization_id,
        kind="plan_allowance",
        amount_nano=amount,
        idempotency_key=f"plan-allowance:{key}",
        actor=actor,
        expires_at=period_end,
        reason=f"credit included in the {new_plan.name} plan until {period_end:%Y-%m-%d}",
        source_ref=f"subscription:{subscription.pk}",
    )
    return granted.grant.pk
