"""Pricing errors, shaped by api.errors like every other ApplicationError."""

from core.errors import ApplicationError, ErrorKind


class ModelNotFound(ApplicationError):
    """The client asked for a model the catalogue does not have, or that has no price at that time."""

    kind = ErrorKind.NOT_FOUND
    code = "model_not_found"


class PriceVersionLocked(ApplicationError):
    """A price version that has taken effect is history and cannot change."""

    kind = ErrorKind.CONFLICT
    code = "price_version_in_effect"


class PricingConflict(ApplicationError):
    """The change would contradict existing pricing (overlapping versions, a duplicate, an active duplicate)."""

    kind = ErrorKind.CONFLICT
    code = "pricing_conflict"


class StaleConfirmation(PricingConflict):
    """A confirmed change no longer matches what was confirmed: the prices it was to replace changed meanwhile."""

    code = "stale_confirmation"


class PricingNotFound(ApplicationError):
    """A plan, offer, override, schedule or subscription id that does not exist."""

    kind = ErrorKind.NOT_FOUND
    code = "not_found"
