"""Pricing writes. Other areas import from here: `from billing.pricing import services`."""

from billing.pricing.services.catalog import (
    model_create,
    model_update,
    price_book_seed,
    price_version_cancel,
    price_version_create,
    price_version_update,
)
from billing.pricing.services.rating import ausage_rate, usage_rate

__all__ = [
    "ausage_rate",
    "model_create",
    "model_update",
    "price_book_seed",
    "price_version_cancel",
    "price_version_create",
    "price_version_update",
    "usage_rate",
]
