"""Pricing writes. Other areas import from here: `from billing.pricing import services`."""

from billing.pricing.services.catalog import (
    REPLACES_NOTHING,
    PriceVersionReview,
    model_create,
    model_update,
    price_book_seed,
    price_version_cancel,
    price_version_create,
    price_version_review,
    price_version_update,
)
from billing.pricing.services.commitments import (
    commitment_bill,
    commitment_monthly_fee_nano,
    commitment_offer_create,
    commitment_offer_update,
    commitment_purchase,
    commitment_purchase_once,
    commitments_bill,
    offer_monthly_fee_nano,
)
from billing.pricing.services.overrides import override_create, override_end
from billing.pricing.services.periods import periods_close, tier_trueup
from billing.pricing.services.plan_changes import Proration, proration_compute, subscription_change
from billing.pricing.services.plans import (
    AllowanceSpec,
    plan_create,
    plan_update,
    subscription_cancel,
    subscription_create,
    subscription_renew,
    subscription_renew_invoiced,
    subscriptions_renew,
)
from billing.pricing.services.preview import Preview, pricing_preview, window_usages
from billing.pricing.services.quotes import (
    QUOTE_MAX_AGE,
    CommitmentQuote,
    PlanQuote,
    commitment_quote,
    commitment_quote_accept,
    plan_quote,
    plan_quote_accept,
)
from billing.pricing.services.rating import ausage_rate, usage_rate
from billing.pricing.services.tier_schedules import tier_schedule_cancel, tier_schedule_create, tier_schedule_update

__all__ = [
    "QUOTE_MAX_AGE",
    "REPLACES_NOTHING",
    "AllowanceSpec",
    "CommitmentQuote",
    "PlanQuote",
    "Preview",
    "PriceVersionReview",
    "Proration",
    "ausage_rate",
    "commitment_bill",
    "commitment_monthly_fee_nano",
    "commitment_offer_create",
    "commitment_offer_update",
    "commitment_purchase",
    "commitment_purchase_once",
    "commitment_quote",
    "commitment_quote_accept",
    "commitments_bill",
    "model_create",
    "model_update",
    "offer_monthly_fee_nano",
    "override_create",
    "override_end",
    "periods_close",
    "plan_create",
    "plan_quote",
    "plan_quote_accept",
    "plan_update",
    "price_book_seed",
    "price_version_cancel",
    "price_version_create",
    "price_version_review",
    "price_version_update",
    "pricing_preview",
    "proration_compute",
    "subscription_cancel",
    "subscription_change",
    "subscription_create",
    "subscription_renew",
    "subscription_renew_invoiced",
    "subscriptions_renew",
    "tier_schedule_cancel",
    "tier_schedule_create",
    "tier_schedule_update",
    "tier_trueup",
    "usage_rate",
    "window_usages",
]
