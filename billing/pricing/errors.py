"""Pricing errors, shaped by api.errors like every other ApplicationError."""

from rest_framework import status

from api.errors import ApplicationError


class ModelNotFound(ApplicationError):
    """The client asked for a model the catalogue does not have, or that has no price at that time."""

    status_code = status.HTTP_404_NOT_FOUND
    error_type = "invalid_request_error"
    code = "model_not_found"


class PriceVersionLocked(ApplicationError):
    """A price version that has taken effect is history and cannot change."""

    status_code = status.HTTP_409_CONFLICT
    code = "price_version_in_effect"


class PricingConflict(ApplicationError):
    """The change would contradict existing pricing (overlapping versions, a duplicate, an active duplicate)."""

    status_code = status.HTTP_409_CONFLICT
    code = "pricing_conflict"


class StaleConfirmation(PricingConflict):
    """A confirmed change no longer matches what was confirmed: the prices it was to replace changed meanwhile."""

    code = "stale_confirmation"


class PricingNotFound(ApplicationError):
    """A plan, offer, override, schedule or subscription id that does not exist."""

    status_code = status.HTTP_404_NOT_FOUND
    error_type = "not_found_error"
    code = "not_found"
