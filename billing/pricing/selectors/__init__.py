"""Pricing reads. Other areas import from here: `from billing.pricing import selectors`."""

from billing.pricing.selectors.catalog import (
    CatalogEntry,
    catalog,
    price_version_at,
    price_versions_scheduled,
    prices_of,
)
from billing.pricing.selectors.context import (
    commitment_month,
    context_build,
    override_at,
    prices_apply_override,
    pricing_context_get,
    subscription_at,
    tier_schedule_at,
)
from billing.pricing.selectors.offers import Drawdown, PlanState, QuotaLeft, offers_offered, plan_state, plans_offered

__all__ = [
    "CatalogEntry",
    "Drawdown",
    "PlanState",
    "QuotaLeft",
    "catalog",
    "commitment_month",
    "context_build",
    "offers_offered",
    "override_at",
    "plan_state",
    "plans_offered",
    "price_version_at",
    "price_versions_scheduled",
    "prices_apply_override",
    "prices_of",
    "pricing_context_get",
    "subscription_at",
    "tier_schedule_at",
]
