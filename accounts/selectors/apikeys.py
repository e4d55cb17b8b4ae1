"""API key reads, and the two cache layers in front of the key records that the metered API authenticates with
(billing.metering.callers): Django's cache (Redis in production) for CACHE_SECONDS, shared by all processes, and a
per-process memory cache for LOCAL_CACHE_SECONDS in front of it.

A revocation (or any change) deletes the Redis entry after commit and the local entry of the process that made
it; other processes see it when their local entry lapses. The worst case is therefore about
LOCAL_CACHE_SECONDS + CACHE_SECONDS = 5 seconds.

Redis only saves database reads here: when it fails, keys are read from the database (and kept in process memory
for LOCAL_CACHE_SECONDS), so authentication keeps working through an outage (see core.caching).
"""

from typing import Any

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import ApiKey
from core.caching import shared_cache_outage
from core.outage import REDIS_ERRORS

CACHE_SECONDS = 3
LOCAL_CACHE_SECONDS = 2
LAST_USED_INTERVAL_SECONDS = 60

# The per-process layer, in front of the shared cache.
local_cache = LocMemCache("accounts-apikeys", {"TIMEOUT": LOCAL_CACHE_SECONDS, "OPTIONS": {"MAX_ENTRIES": 10_000}})


def apikey_cache_key(key_id: str) -> str:
    return f"apikey:v1:{key_id}"


def apikey_cache_invalidate(*, key_id: str) -> None:
    local_cache.delete(apikey_cache_key(key_id))
    try:
        cache.delete(apikey_cache_key(key_id))
    except REDIS_ERRORS as exc:
        # Redis is down: what it held of the key is gone with it or lapses within CACHE_SECONDS.
        shared_cache_outage.failed(exc)


def apikey_ref(key: ApiKey) -> dict[str, Any]:
    """How a record names an API key in JSON (a budget, a webhook event): its id (as in the web UI's /api/keys/), its
    public id (`key_id`: the one /v1's usage and costs name it by, and the start of its secret, so a program can tell
    its own key) and its name."""
    return {"id": key.pk, "key_id": key.key_id, "name": key.name}


def apikey_list(*, organization_id: int) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(organization_id=organization_id)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


def apikey_get(*, organization_id: int, api_key_id: int) -> ApiKey:
    """A key of this organization; any other id (unknown, or another organization's) is a 404."""
    return get_object_or_404(ApiKey, pk=api_key_id, organization_id=organization_id)
