"""The caller of a metered request: the API key a secret belongs to, with the wallet it spends from.

Authentication is one indexed lookup (by the public key_id embedded in the secret, the organization's wallet
joined in the same statement), whose result is read through the two cache layers of accounts.selectors.apikeys, so
most requests touch neither the database nor the network.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey
from accounts.selectors.apikeys import CACHE_SECONDS, LAST_USED_INTERVAL_SECONDS, apikey_cache_key, local_cache
from billing.ledger.models import Wallet
from billing.ledger.services import wallet_get_or_create
from core.caching import aread_through, read_through, shared_cache_outage
from core.orm import orm_call
from core.outage import REDIS_ERRORS

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
    "access",
    "requests_per_minute",
    "tokens_per_minute",
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
    expires_at: datetime | None
    access: str = "metered"  # accounts.models.ApiKeyAccess: "admin" keys only read billing data
    # The key's own rate limits (None: the operator's GATEWAY_KEY_* defaults).
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def allows_endpoint(self, endpoint: str) -> bool:
        return not self.scope_endpoints or endpoint in self.scope_endpoints

    def allows_model(self, model_slug: str) -> bool:
        return not self.scope_models or model_slug in self.scope_models


def _record_query(key_id: str) -> QuerySet[ApiKey, dict[str, Any]]:
    # The ledger's wallet for the organization's currency comes along in the same statement.
    wallet_id = Subquery(
        Wallet.objects.filter(
            organization_id=OuterRef("organization_id"), currency=OuterRef("organization__currency")
        ).values("id")[:1]
    )
    return ApiKey.objects.filter(key_id=key_id).values(*_FIELDS, wallet_id=wallet_id)


def _wallet_id_ensure(organization_id: int) -> int:
    """For an organization that has no wallet yet (no credit ever granted): create it."""
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
        expires_at=record["expires_at"],
        # A record cached before keys had an access kind is a metered key.
        access=record.get("access", "metered"),
        # .get: a record cached before these fields existed has none.
        requests_per_minute=record.get("requests_per_minute"),
        tokens_per_minute=record.get("tokens_per_minute"),
    )


def _touch_due(api_key_id: int) -> str | None:
    """The shared-cache key to claim if this process has not recorded a use of the key in the last minute."""
    used_key = f"apikey:used:{api_key_id}"
    return used_key if local_cache.add(used_key, 1, LAST_USED_INTERVAL_SECONDS) else None


def _touch_claimed(used_key: str) -> bool:
    """Whether this process is the one to write last_used_at this minute (cache.add is atomic in Redis). Without
    Redis, each process writes it at most once a minute."""
    if not shared_cache_outage.usable():
        return True
    try:
        return bool(cache.add(used_key, 1, LAST_USED_INTERVAL_SECONDS))
    except REDIS_ERRORS as exc:
        shared_cache_outage.failed(exc)
        return True


async def _atouch_claimed(used_key: str) -> bool:
    if not shared_cache_outage.usable():
        return True
    try:
        return bool(await cache.aadd(used_key, 1, LAST_USED_INTERVAL_SECONDS))
    except REDIS_ERRORS as exc:
        shared_cache_outage.failed(exc)
        return True


def apikey_authenticate(*, secret: str) -> AuthenticatedKey | None:
    """The key a secret belongs to if it is valid now (not revoked, not expired), else None."""
    key_id = keyformat.secret_key_id(secret)
    if key_id is None:
        return None
    record = read_through(local_cache, apikey_cache_key(key_id), lambda: _record_load(key_id), CACHE_SECONDS)
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
    record = await aread_through(local_cache, apikey_cache_key(key_id), lambda: _record_load(key_id), CACHE_SECONDS)
    now = timezone.now()
    authenticated = _record_check(record, secret, now)
    if authenticated is not None:
        used_key = _touch_due(authenticated.id)
        if used_key and await _atouch_claimed(used_key):
            await orm_call(_last_used_set, authenticated.id, now)
    return authenticated
