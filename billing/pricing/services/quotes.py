"""Self-service plan changes and commitment purchases: a quote (the preview) and its acceptance (the charge).

A quote is computed by the same functions that charge (`change_terms` for a plan change, the plan's fee for a
first subscription, `offer_monthly_fee_nano` for a commitment), and accepting it computes them again under the
locks that the charge holds and refuses with StaleConfirmation, writing nothing, unless they equal what was
quoted. So what a customer confirms is exactly what is charged, and a confirmation made stale by a plan change,
a renewal, a price edit or used included tokens is refused instead of charging something else.

A plan change takes effect at the moment it was quoted (proration is by the microsecond, so that moment is part
of the price): a quote older than QUOTE_MAX_AGE is refused, which bounds how far back a change can date.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from billing.pricing import periods
from billing.pricing.errors import PricingConflict, PricingNotFound, StaleConfirmation
from billing.pricing.models import (
    LIVE_STATUSES,
    Commitment,
    CommitmentOffer,
    Plan,
    Subscription,
    SubscriptionPeriod,
    SubscriptionStatus,
)
from billing.pricing.services.commitments import Purchase, commitment_purchase_once, offer_monthly_fee_nano
from billing.pricing.services.plan_changes import (
    ChangeTerms,
    _change_check,
    _current_stretch,
    change_terms,
    subscription_change,
)
from billing.pricing.services.plans import _locked_live, _step_months, subscription_create

QUOTE_MAX_AGE = timedelta(minutes=15)
PLAN_CHANGED = "Your plan changed since this preview; look at the new preview and confirm again."


@dataclass(frozen=True)
class PlanQuote:
    """What subscribing to (or changing to) `plan_slug` at `at` charges, and what it replaces."""

    organization_id: int
    plan_slug: str
    at: datetime
    # None when subscribing: the live subscription and its plan record in force, which the change supersedes.
    subscription_id: int | None
    replaces_period_id: int | None
    from_plan_slug: str | None
    # The new plan's (part of the) period, its fee for it, and the unused part of the old fee credited.
    period_start: datetime
    period_end: datetime
    charge_nano: int
    credit_nano: int

    @property
    def net_nano(self) -> int:
        """Positive: debited from credit; negative: granted back as credit."""
        return self.charge_nano - self.credit_nano

    @property
    def is_change(self) -> bool:
        return self.subscription_id is not None


def _live(organization_id: int) -> Subscription | None:
    return Subscription.objects.filter(organization_id=organization_id, status__in=LIVE_STATUSES).first()


def _plan_offered(plan_slug: str) -> Plan:
    plan = Plan.objects.filter(slug=plan_slug).first()
    if plan is None:
        raise PricingNotFound(f"The plan '{plan_slug}' does not exist.", param="plan")
    if not plan.is_active:
        raise PricingConflict(f"The plan '{plan_slug}' is no longer offered.", param="plan")
    return plan


def _subscribe_quote(organization_id: int, plan: Plan, at: datetime) -> PlanQuote:
    # subscription_create's first period and fee.
    return PlanQuote(
        organization_id=organization_id,
        plan_slug=plan.slug,
        at=at,
        subscription_id=None,
        replaces_period_id=None,
        from_plan_slug=None,
        period_start=at,
        period_end=periods.add_months(at, _step_months(plan)),
        charge_nano=plan.fee_nano,
        credit_nano=0,
    )


def _change_quote(
    subscription: Subscription, current: SubscriptionPeriod | None, plan_slug: str, terms: ChangeTerms, at: datetime
) -> PlanQuote:
    return PlanQuote(
        organization_id=subscription.organization_id,
        plan_slug=plan_slug,
        at=at,
        subscription_id=subscription.pk,
        replaces_period_id=current.pk if current is not None else None,
        from_plan_slug=subscription.plan.slug,
        period_start=terms.period_start,
        period_end=terms.period_end,
        charge_nano=terms.charge_nano,
        credit_nano=terms.proration.credit_nano,
    )


@transaction.atomic
def plan_quote(*, organization_id: int, plan_slug: str, at: datetime | None = None) -> PlanQuote:
    """Preview subscribing the organization to `plan_slug` now, or changing its live subscription to it. Writes
    nothing (it takes the charge's locks to read what the charge would read)."""
    at = at or timezone.now()
    live = _live(organization_id)
    if live is None:
        return _subscribe_quote(organization_id, _plan_offered(plan_slug), at)
    if live.status == SubscriptionStatus.PAST_DUE:
        raise PricingConflict(
            "Your plan's renewal fee is unpaid (past due); top up so it can be collected, then change plan.",
            param="plan",
        )
    subscription = _locked_live(live.pk)
    new_plan = _change_check(subscription, Plan.objects.filter(slug=plan_slug).first(), plan_slug, at)
    current = _current_stretch(subscription)
    return _change_quote(subscription, current, plan_slug, change_terms(subscription, current, new_plan, at), at)


@transaction.atomic
def plan_quote_accept(*, quote: PlanQuote, actor: Any = None) -> SubscriptionPeriod:
    """Charge exactly `quote` (module doc): StaleConfirmation, and nothing written, when the organization's plan
    or the amounts changed since, or the quote is too old; InsufficientCredit (402) as the services answer it."""
    now = timezone.now()
    if not now - QUOTE_MAX_AGE <= quote.at <= now:
        raise StaleConfirmation(
            f"This preview is more than {QUOTE_MAX_AGE.seconds // 60} minutes old; preview the change again.",
            param="quote",
        )
    # The organization's row serializes its subscriptions (subscription_create takes it too).
    if not Organization.objects.select_for_update().filter(pk=quote.organization_id).exists():
        raise PricingNotFound(f"No organization {quote.organization_id}.", param="organization")
    live = _live(quote.organization_id)
    if (live.pk if live is not None else None) != quote.subscription_id:
        raise StaleConfirmation(PLAN_CHANGED, param="quote")
    if live is None:
        if _subscribe_quote(quote.organization_id, _plan_offered(quote.plan_slug), quote.at) != quote:
            raise StaleConfirmation("The plan's fee changed since this preview; preview it again.", param="quote")
        subscription = subscription_create(
            organization_id=quote.organization_id, plan_slug=quote.plan_slug, actor=actor, at=quote.at
        )
        return SubscriptionPeriod.objects.get(subscription=subscription)

    subscription = _locked_live(live.pk)
    current = _current_stretch(subscription)
    if current is None or current.pk != quote.replaces_period_id:
        raise StaleConfirmation(PLAN_CHANGED, param="quote")

    def matches_quote(terms: ChangeTerms, current: SubscriptionPeriod | None) -> None:
        if _change_quote(subscription, current, quote.plan_slug, terms, quote.at) != quote:
            raise StaleConfirmation(
                "The price of this change moved since the preview (included tokens or credit were used meanwhile, "
                "or the plan's fee changed); look at the new preview and confirm again.",
                param="quote",
            )

    return subscription_change(
        subscription_id=live.pk, plan_slug=quote.plan_slug, actor=actor, at=quote.at, expect=matches_quote
    )


@dataclass(frozen=True)
class CommitmentQuote:
    """The terms a purchase of an offer would buy: what the preview shows and the confirmation must still find."""

    offer_id: int
    monthly_tokens: int
    reserved_tokens_per_minute: int
    term_months: int
    discount_bps: int
    payment: str
    blended_price_micro_per_mtok: int
    monthly_fee_nano: int

    @property
    def total_fee_nano(self) -> int:
        return self.monthly_fee_nano * self.term_months

    @property
    def first_payment_nano(self) -> int:
        """Taken from credit at purchase: the whole term upfront, or the first month."""
        return self.total_fee_nano if self.payment == "upfront" else self.monthly_fee_nano

    @property
    def list_monthly_nano(self) -> int:
        """The committed tokens at the blended on-demand price, before the discount."""
        return -(-self.monthly_tokens * self.blended_price_micro_per_mtok // 1000)


def _offer_quote(offer: CommitmentOffer) -> CommitmentQuote:
    return CommitmentQuote(
        offer_id=offer.pk,
        monthly_tokens=offer.monthly_tokens,
        reserved_tokens_per_minute=offer.reserved_tokens_per_minute or 0,
        term_months=offer.term_months,
        discount_bps=offer.discount_bps,
        payment=offer.payment,
        blended_price_micro_per_mtok=offer.blended_price_micro_per_mtok,
        monthly_fee_nano=offer_monthly_fee_nano(offer),
    )


def _offer_offered(offer_id: int) -> CommitmentOffer:
    offer = CommitmentOffer.objects.select_related("model").filter(pk=offer_id).first()
    if offer is None:
        raise PricingNotFound(f"No commitment offer {offer_id}.", param="offer")
    if not offer.is_active:
        raise PricingConflict(f"Commitment offer {offer_id} is no longer offered.", param="offer")
    return offer


def commitment_quote(*, offer_id: int) -> CommitmentQuote:
    """Preview buying an offer: its fee (as the purchase computes it), discount, term and payment."""
    return _offer_quote(_offer_offered(offer_id))


@transaction.atomic
def commitment_quote_accept(
    *, organization_id: int, quote: CommitmentQuote, idempotency_key: str, actor: Any = None
) -> Purchase:
    """Buy the offer on exactly the quoted terms. A replay of the key returns the first purchase (a double
    submit buys once); terms changed since the preview are a StaleConfirmation and nothing is written."""
    bought = Commitment.objects.filter(idempotency_key=idempotency_key, organization_id=organization_id).first()
    if bought is None:
        # The offer's row is locked so that an edit cannot land between this check and the purchase.
        CommitmentOffer.objects.select_for_update().filter(pk=quote.offer_id).exists()
        if _offer_quote(_offer_offered(quote.offer_id)) != quote:
            raise StaleConfirmation(
                "The offer's terms changed since this preview; look at the new preview and confirm again.",
                param="quote",
            )
    return commitment_purchase_once(
        organization_id=organization_id, offer_id=quote.offer_id, actor=actor, idempotency_key=idempotency_key
    )
