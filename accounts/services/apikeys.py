"""API key writes. Every change that affects authentication drops the key's cache entry after commit."""

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, TypedDict

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey, ApiKeyAccess, ApiKeyEndpoint, Organization
from accounts.selectors.apikeys import apikey_cache_invalidate
from accounts.services.audit import audit_record
from accounts.services.organizations import name_clean
from core.errors import ApplicationError

WORKFLOW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
MODEL_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$")
MAX_SCOPE_MODELS = 100
MAX_ROTATION_OVERLAP = timedelta(days=30)
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
MAX_EXPIRY = timedelta(days=3660)


class Scopes(TypedDict, total=False):
    endpoints: list[str]
    models: list[str]


class _Unset:
    """Marks an apikey_update argument that was not given (None is a meaningful value: "no expiry")."""


UNSET: Final = _Unset()


def _workflow_clean(value: object) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not WORKFLOW_RE.match(value):
        raise ApplicationError(
            "workflow must be up to 100 letters, digits or . _ : / - and start with a letter or digit",
            param="workflow",
        )
    return value


def _string_list(value: object, *, param: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ApplicationError(f"{param} must be a list of strings", param=param)
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ApplicationError(f"{param} must be a list of strings", param=param)
    return items


def scopes_clean(scopes: object) -> tuple[list[str], list[str]]:
    """(endpoints, models), sorted and de-duplicated; empty lists mean everything is allowed."""
    if scopes is None:
        return [], []
    if not isinstance(scopes, dict) or set(scopes) - {"endpoints", "models"}:
        raise ApplicationError('scopes must be an object with "endpoints" and/or "models" lists', param="scopes")
    endpoints = _string_list(scopes.get("endpoints") or [], param="scopes.endpoints")
    unknown = sorted(set(endpoints) - set(ApiKeyEndpoint.values))
    if unknown:
        raise ApplicationError(
            f"unknown endpoint {unknown[0]!r}; allowed: {', '.join(ApiKeyEndpoint.values)}", param="scopes.endpoints"
        )
    models = _string_list(scopes.get("models") or [], param="scopes.models")
    if len(models) > MAX_SCOPE_MODELS:
        raise ApplicationError(f"at most {MAX_SCOPE_MODELS} models per key", param="scopes.models")
    for slug in models:
        if not MODEL_SLUG_RE.match(slug):
            raise ApplicationError(f"{slug[:120]!r} is not a model id", param="scopes.models")
    return sorted(set(endpoints)), sorted(set(models))


# Bounds of a key's own rate limits (per minute); what the organization allows bounds them at admission too.
MAX_KEY_REQUESTS_PER_MINUTE = 1_000_000
MAX_KEY_TOKENS_PER_MINUTE = 1_000_000_000


def rate_limit_clean(value: object, *, param: str, maximum: int) -> int | None:
    """A key's own requests or tokens per minute: a whole number from 1 to `maximum`, or None (no limit of its
    own)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApplicationError(f"{param} must be a whole number from 1 to {maximum:,}, or none", param=param)
    return value


def expires_at_clean(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise ApplicationError("expires_at must be a date and time with a time zone", param="expires_at")
    now = timezone.now()
    if value <= now:
        raise ApplicationError("expires_at must be in the future", param="expires_at")
    if value > now + MAX_EXPIRY:
        raise ApplicationError("expires_at must be within ten years", param="expires_at")
    return value


def _new_secret() -> tuple[str, str, str]:
    key_id, secret = keyformat.secret_generate()
    return key_id, secret, keyformat.secret_hash(secret)


@transaction.atomic
def apikey_create(
    *,
    organization_id: int,
    name: str,
    created_by: User | None = None,
    workflow: str = "",
    scopes: Scopes | None = None,
    expires_at: datetime | None = None,
    access: str = ApiKeyAccess.METERED,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the returned secret exists nowhere else and cannot be recovered later. An admin key
    (`access="admin"`) reads the organization's billing data and calls no model: it takes no scopes. A key's spend
    limit is a budget of the key (billing.metering.budgets.services.key_spend_limit_set)."""
    clean_name = name_clean(name)
    rpm = rate_limit_clean(requests_per_minute, param="requests_per_minute", maximum=MAX_KEY_REQUESTS_PER_MINUTE)
    tpm = rate_limit_clean(tokens_per_minute, param="tokens_per_minute", maximum=MAX_KEY_TOKENS_PER_MINUTE)
    endpoints, models = scopes_clean(scopes)
    _access_check(access, endpoints=endpoints, models=models)
    expiry = expires_at_clean(expires_at)
    if not Organization.objects.filter(pk=organization_id).exists():
        raise ApplicationError("organization not found", param="organization_id", code="not_found")
    key_id, secret, hashed = _new_secret()
    api_key = ApiKey.objects.create(
        organization_id=organization_id,
        name=clean_name,
        workflow=_workflow_clean(workflow),
        key_id=key_id,
        secret_hash=hashed,
        scope_endpoints=endpoints,
        scope_models=models,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        expires_at=expiry,
        created_by=created_by,
        access=access,
    )
    _audit(api_key, action="create", actor=created_by, access=access)
    return api_key, secret


def _access_check(access: str, *, endpoints: list[str], models: list[str]) -> None:
    if access not in ApiKeyAccess.values:
        raise ApplicationError(
            f"access must be one of {', '.join(ApiKeyAccess.values)}.", param="access", code="invalid_value"
        )
    if access == ApiKeyAccess.ADMIN and (endpoints or models):
        raise ApplicationError(
            "an admin key reads billing data only and calls no model: it takes no scopes",
            param="access",
            code="invalid_value",
        )


def _locked(api_key_id: int) -> ApiKey:
    try:
        return ApiKey.objects.select_for_update().get(pk=api_key_id)
    except ApiKey.DoesNotExist:
        raise ApplicationError("API key not found", param="api_key_id", code="not_found") from None


def _audit(api_key: ApiKey, *, action: str, actor: User | None, **detail: object) -> None:
    audit_record(
        actor=actor,
        action=f"apikey.{action}",
        organization_id=api_key.organization_id,
        target=f"ApiKey:{api_key.pk}",
        detail={"name": api_key.name, "key": keyformat.secret_display(api_key.key_id), **detail},
    )


def _invalidate_on_commit(api_key: ApiKey) -> None:
    key_id = api_key.key_id
    transaction.on_commit(lambda: apikey_cache_invalidate(key_id=key_id))


@transaction.atomic
def apikey_revoke(*, api_key_id: int, actor: User | None) -> ApiKey:
    """Revoke a key (idempotent: revoking a revoked key changes nothing). Effective within seconds."""
    api_key = _locked(api_key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.revoked_by = actor
        api_key.save(update_fields=["revoked_at", "revoked_by"])
        _invalidate_on_commit(api_key)
        _audit(api_key, action="revoke", actor=actor)
    return api_key


@transaction.atomic
def apikey_rotate(
    *, api_key_id: int, actor: User | None, overlap: timedelta = DEFAULT_ROTATION_OVERLAP
) -> tuple[ApiKey, str]:
    """Issue a replacement with the same settings; the old key keeps working for `overlap`, then expires."""
    if not isinstance(overlap, timedelta) or overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        raise ApplicationError("the overlap must be between 0 seconds and 30 days", param="overlap_seconds")
    old = _locked(api_key_id)
    now = timezone.now()
    if old.revoked_at is not None:
        raise ApplicationError("this key is revoked; create a new key instead", code="key_revoked")
    if old.replaced_by_id is not None:
        raise ApplicationError("this key was already rotated; rotate its replacement instead", code="key_rotated")
    if old.expires_at is not None and old.expires_at <= now:
        raise ApplicationError("this key has expired; create a new key instead", code="key_expired")
    key_id, secret, hashed = _new_secret()
    new = ApiKey.objects.create(
        organization_id=old.organization_id,
        name=old.name,
        workflow=old.workflow,
        key_id=key_id,
        secret_hash=hashed,
        scope_endpoints=old.scope_endpoints,
        scope_models=old.scope_models,
        requests_per_minute=old.requests_per_minute,
        tokens_per_minute=old.tokens_per_minute,
        expires_at=old.expires_at,
        created_by=actor,
        access=old.access,
    )
    overlap_end = now + overlap
    old.expires_at = overlap_end if old.expires_at is None else min(old.expires_at, overlap_end)
    old.replaced_by = new
    old.rotated_at = now
    old.save(update_fields=["expires_at", "replaced_by", "rotated_at"])
    _invalidate_on_commit(old)
    _audit(
        old, action="rotate", actor=actor, replaced_by=f"ApiKey:{new.pk}", old_key_expires_at=old.expires_at.isoformat()
    )
    return new, secret


@transaction.atomic
def apikey_update(
    *,
    api_key_id: int,
    actor: User | None,
    name: str | _Unset = UNSET,
    workflow: str | _Unset = UNSET,
    scopes: Scopes | _Unset | None = UNSET,
    expires_at: datetime | _Unset | None = UNSET,
    requests_per_minute: int | _Unset | None = UNSET,
    tokens_per_minute: int | _Unset | None = UNSET,
) -> ApiKey:
    """Change a key's name, label, scopes, rate limits or expiry; arguments left out keep their value. (Its spend
    limits are budgets: billing.metering.budgets.services.)"""
    api_key = _locked(api_key_id)
    if api_key.revoked_at is not None:
        raise ApplicationError("this key is revoked and can no longer be changed", code="key_revoked")
    if not isinstance(name, _Unset):
        api_key.name = name_clean(name)
    if not isinstance(workflow, _Unset):
        api_key.workflow = _workflow_clean(workflow)
    if not isinstance(scopes, _Unset):
        api_key.scope_endpoints, api_key.scope_models = scopes_clean(scopes)
    if not isinstance(requests_per_minute, _Unset):
        api_key.requests_per_minute = rate_limit_clean(
            requests_per_minute, param="requests_per_minute", maximum=MAX_KEY_REQUESTS_PER_MINUTE
        )
    if not isinstance(tokens_per_minute, _Unset):
        api_key.tokens_per_minute = rate_limit_clean(
            tokens_per_minute, param="tokens_per_minute", maximum=MAX_KEY_TOKENS_PER_MINUTE
        )
    if not isinstance(expires_at, _Unset):
        if api_key.replaced_by_id is not None:
            raise ApplicationError(
                "this key was rotated; its expiry is the end of the overlap window", param="expires_at"
            )
        api_key.expires_at = expires_at_clean(expires_at)
    _access_check(api_key.access, endpoints=api_key.scope_endpoints, models=api_key.scope_models)
    api_key.save()
    _invalidate_on_commit(api_key)
    _audit(api_key, action="update", actor=actor)
    return api_key
