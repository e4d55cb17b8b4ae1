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

__all__ = [
    "AuthenticatedKey",
    "aapikey_authenticate",
    "apikey_authenticate",
    "apikey_cache_invalidate",
    "apikey_get",
    "apikey_list",
    "apikey_spend_window",
]
