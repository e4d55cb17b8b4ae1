"""Pricing data: the model catalogue and its effective-dated price versions, plans, commitments, overrides,
volume tiers, and the period counters rating claims from."""

from billing.pricing.models.catalog import AIModel, Encoding, ModelKind, ModelStatus, PriceVersion
from billing.pricing.models.commitments import (
    MINUTES_PER_MONTH,
    ChargeStatus,
    Commitment,
    CommitmentCharge,
    CommitmentOffer,
    CommitmentPayment,
    CommitmentStatus,
)
from billing.pricing.models.counters import CounterKind, PeriodCounter, TierTrueUp
from billing.pricing.models.overrides import PriceOverride
from billing.pricing.models.plans import (
    LIVE_STATUSES,
    PeriodKind,
    Plan,
    PlanAllowance,
    PlanInterval,
    Subscription,
    SubscriptionPeriod,
    SubscriptionStatus,
)
from billing.pricing.models.scope import scope_key
from billing.pricing.models.tiers import TierBand, TierMode, TierSchedule

__all__ = [
    "LIVE_STATUSES",
    "MINUTES_PER_MONTH",
    "AIModel",
    "ChargeStatus",
    "Commitment",
    "CommitmentCharge",
    "CommitmentOffer",
    "CommitmentPayment",
    "CommitmentStatus",
    "CounterKind",
    "Encoding",
    "ModelKind",
    "ModelStatus",
    "PeriodCounter",
    "PeriodKind",
    "Plan",
    "PlanAllowance",
    "PlanInterval",
    "PriceOverride",
    "PriceVersion",
    "Subscription",
    "SubscriptionPeriod",
    "SubscriptionStatus",
    "TierBand",
    "TierMode",
    "TierSchedule",
    "TierTrueUp",
    "scope_key",
]
