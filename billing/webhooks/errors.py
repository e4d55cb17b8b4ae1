"""Webhook errors. They are ApplicationErrors, so every API renders them in the one error shape."""

from billing.ledger.errors import NotFound

__all__ = ["NotFound"]
