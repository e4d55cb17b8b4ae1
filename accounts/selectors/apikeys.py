"""API key reads, including authentication on the gateway's hot path.

Authentication is one indexed lookup (by the public key_id embedded in the secret), whose result is cached in
two layers so most requests touch neither the database nor the network:

- Django's cache (Redis in production) for CACHE_SECONDS, shared by all processes;
- a per-process memory cache for LOCAL_CACHE_SECONDS in front of it.

A revocation (or any change) deletes the Redis entry after commit and the local entry of the process that made
it; other processes see it when their local entry lapses. The worst case is therefore about
LOCAL_CACHE_SECONDS + CACHE_SECONDS = 5 seconds.

Redis only saves database reads here: when it fails, keys are read from the database (and kept in process memory
for LOCAL_CACHE_SECONDS), so authentication keeps working through an outage (see config.caching).
"""

import secrets
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey, SpendPeriod
from config.caching import CACHE_ERRORS, aread_through, read_through, shared_cache_failed, shared_cache_usable
from config.orm import orm_call

CACHE_SECONDS = 3
LOCAL_CACHE_SECONDS = 2
LAST_USED_INTERVAL_SECONDS = 60

_local = LocMemCache("accounts-apikeys", {"TIMEOUT": LOCAL_CACHE_SECONDS, "OPTIONS": {"MAX_ENTRIES": 10_000}})
# Cached for unknown key ids too, so a flood of well-formed but unknown keys does not reach the database.
_UNKNOWN: dict[str, Any] = {"unknown": True}

_FIELDS = (
    "id",
    "key_id",
    "organization_id",
    "secret_hash",
    "name",
    "workflow",
    "scope_endpoints",
    "scope_models",
    "spend_limit_nano",
    "spend_limit_period",
    "expires_at",
    "revoked_at",
)


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    id: int
    key_id: str
    organization_id: int
    wallet_id: int
    name: str
    workflow: str
    scope_endpoints: tuple[str, ...]  # empty: every endpoint
    scope_models: tuple[str, ...]  # empty: every model
    spend_limit_nano: int | None
    spend_limit_period: str | None  # "day" | "week" | "month" when spend_limit_nano is set
    expires_at: datetime | None

    def allows_endpoint(self, endpoint: str) -> bool:
        return not self.scope_endpoints or endpoint in self.scope_endpoints

    def allows_model(self, model_slug: str) -> bool:
        return not self.scope_models or model_slug in self.scope_models


def _cache_key(key_id: str) -> str:
    return f"apikey:v1:{key_id}"


def apikey_cache_invalidate(*, key_id: str) -> None:
    _local.delete(_cache_key(key_id))
    try:
        cache.delete(_cache_key(key_id))
    except CACHE_ERRORS as exc:
        # Redis is down: what it held of the key is gone with it or lapses within CACHE_SECONDS.
        shared_cache_failed(exc)


def _record_query(key_id: str) -> QuerySet[ApiKey, dict[str, Any]]:
    # The ledger's wallet for the organization's currency comes along in the same statement.
    wallet = apps.get_model("ledger", "Wallet")
    wallet_id = Subquery(
        wallet.objects.filter(
            organization_id=OuterRef("organization_id"), currency=OuterRef("organization__currency")
        ).values("id")[:1]
    )
    return ApiKey.objects.filter(key_id=key_id).values(*_FIELDS, wallet_id=wallet_id)


def _wallet_id_ensure(organization_id: int) -> int:
    """For an organization that has no wallet yet (no credit ever granted): create it."""
    from billing.ledger.services import wallet_get_or_create  # the ledger depends on accounts, not back

    return wallet_get_or_create(organization_id=organization_id).pk


def _last_used_set(key_pk: int, at: datetime) -> None:
    ApiKey.objects.filter(pk=key_pk).update(last_used_at=at)


def _record_load(key_id: str) -> dict[str, Any]:
    record = _record_query(key_id).first()
    if record is None:
        return _UNKNOWN
    if record["wallet_id"] is None:
        record["wallet_id"] = _wallet_id_ensure(record["organization_id"])
    return record


def _record_check(record: dict[str, Any], secret: str, now: datetime) -> AuthenticatedKey | None:
    if record.get("unknown"):
        return None
    if not secrets.compare_digest(record["secret_hash"], keyformat.secret_hash(secret)):
        return None
    if record["revoked_at"] is not None:
        return None
    if record["expires_at"] is not None and record["expires_at"] <= now:
        return None
    return AuthenticatedKey(
        id=record["id"],
        key_id=record["key_id"],
        organization_id=record["organization_id"],
        wallet_id=record["wallet_id"],
        name=record["name"],
        workflow=record["workflow"],
        scope_endpoints=tuple(record["scope_endpoints"]),
        scope_models=tuple(record["scope_models"]),
        spend_limit_nano=record["spend_limit_nano"],
        spend_limit_period=record["spend_limit_period"] or None,
        expires_at=record["expires_at"],
    )


def _touch_due(api_key_id: int) -> str | None:
    """The shared-cache key to claim if this process has not recorded a use of the key in the last minute."""
    used_key = f"apikey:used:{api_key_id}"
    return used_key if _local.add(used_key, 1, LAST_USED_INTERVAL_SECONDS) else None


def _touch_claimed(used_key: str) -> bool:
    """Whether this process is the one to write last_used_at this minute (cache.add is atomic in Redis). Without
    Redis, each process writes it at most once a minute."""
    if not shared_cache_usable():
        return True
    try:
        return bool(cache.add(used_key, 1, LAST_USED_INTERVAL_SECONDS))
    except CACHE_ERRORS as exc:
        shared_cache_failed(exc)
        return True


async def _atouch_claimed(used_key: str) -> bool:
    if not shared_cache_usable():
        return True
    try:
        return bool(await cache.aadd(used_key, 1, LAST_USED_INTERVAL_SECONDS))
    except CACHE_ERRORS as exc:
        shared_cache_failed(exc)
        return True


def apikey_authenticate(*, secret: str) -> AuthenticatedKey | None:
    """The key a secret belongs to if it is valid now (not revoked, not expired), else None."""
    key_id = keyformat.secret_key_id(secret)
    if key_id is None:
        return None
    record = read_through(_local, _cache_key(key_id), lambda: _record_load(key_id), CACHE_SECONDS)
    now = timezone.now()
    authenticated = _record_check(record, secret, now)
    if authenticated is not None:
        used_key = _touch_due(authenticated.id)
        if used_key and _touch_claimed(used_key):
            _last_used_set(authenticated.id, now)
    return authenticated


async def aapikey_authenticate(*, secret: str) -> AuthenticatedKey | None:
    """apikey_authenticate for async views; a cache hit in this process costs no I/O at all."""
    key_id = keyformat.secret_key_id(secret)
    if key_id is None:
        return None
    record = await aread_through(_local, _cache_key(key_id), lambda: _record_load(key_id), CACHE_SECONDS)
    now = timezone.now()
    authenticated = _record_check(record, secret, now)
    if authenticated is not None:
        used_key = _touch_due(authenticated.id)
        if used_key and await _atouch_claimed(used_key):
            await orm_call(_last_used_set, authenticated.id, now)
    return authenticated


def apikey_spend_window(*, period: str, at: datetime) -> tuple[datetime, datetime]:
    """The calendar period (UTC) containing `at` that a key's spend limit applies to: [start, end)."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == SpendPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == SpendPeriod.WEEK:
        start = day - timedelta(days=day.weekday())  # weeks start on Monday
        return start, start + timedelta(days=7)
    if period == SpendPeriod.MONTH:
        start = day.replace(day=1)
        return start, start + timedelta(days=monthrange(start.year, start.month)[1])
    raise ValueError(f"unknown spend period {period!r}")


def apikey_list(*, organization_id: int) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(organization_id=organization_id)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


def apikey_get(*, organization_id: int, api_key_id: int) -> ApiKey:
    """A key of this organization; any other id (unknown, or another organization's) is a 404."""
    return get_object_or_404(ApiKey, pk=api_key_id, organization_id=organization_id)
