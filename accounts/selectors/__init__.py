"""Reads for organizations, members and API keys, including API-key authentication."""

from accounts.selectors.apikeys import (
    AuthenticatedKey,
    aapikey_authenticate,
    apikey_authenticate,
    apikey_cache_invalidate,
    apikey_get,
    apikey_list,
    apikey_spend_window,
)
from accounts.selectors.audit import audit_events
from accounts.selectors.members import (
    invitation_by_token,
    invitation_get,
    invitation_list_open,
    invitation_state,
    membership_get,
    membership_list,
)

__all__ = [
    "AuthenticatedKey",
    "aapikey_authenticate",
    "apikey_authenticate",
    "apikey_cache_invalidate",
    "apikey_get",
    "apikey_list",
    "apikey_spend_window",
    "audit_events",
    "invitation_by_token",
    "invitation_get",
    "invitation_list_open",
    "invitation_state",
    "membership_get",
    "membership_list",
]
