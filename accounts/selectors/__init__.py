"""Reads for organizations, members and API keys."""

from accounts.selectors.apikeys import (
    apikey_cache_invalidate,
    apikey_get,
    apikey_list,
    apikey_ref,
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
    "apikey_cache_invalidate",
    "apikey_get",
    "apikey_list",
    "apikey_ref",
    "audit_events",
    "invitation_by_token",
    "invitation_get",
    "invitation_list_open",
    "invitation_state",
    "membership_get",
    "membership_list",
]
