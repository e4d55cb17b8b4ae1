"""Writes of the `api` app: staff map models to the model servers (upstreams) that answer for them.

Every change is audited (never with the upstream's API key) and drops this process's cached route after commit;
other web processes pick it up within GATEWAY_CACHE_SECONDS.
"""

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import IntegrityError, transaction

from accounts.services import audit_record
from api.models import MAX_UPSTREAM_TIMEOUT_SECONDS, Upstream
from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel
from core.errors import ApplicationError, ErrorKind

Actor = AbstractBaseUser | AnonymousUser | None
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_RE = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(\.{_LABEL})*\.?$")
UPDATABLE = ("base_url", "api_key", "upstream_model", "timeout_seconds", "forwards_service_tier", "enabled")


class UpstreamNotFound(ApplicationError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class UpstreamConflict(ApplicationError):
    kind = ErrorKind.CONFLICT
    code = "upstream_exists"


def _routes_forget() -> None:
    from api.gateway.cache import caches_clear

    transaction.on_commit(caches_clear)


def _base_url_invalid(message: str) -> ApplicationError:
    return ApplicationError(f"base_url {message}, e.g. https://api.example.com/v1", param="base_url")


def _host_valid(host: str) -> bool:
    """A DNS name (service names with underscores included, international names in their IDNA form) or an IP."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return bool(HOST_RE.match(ascii_host))


def base_url_clean(value: object) -> str:
    """The model server's base URL, normalized (lower-case scheme, no trailing slash): http(s), a valid host and
    port, no credentials, query or fragment, no spaces or control characters. The gateway appends
    "/chat/completions" to it, so anything after the path would send calls somewhere else."""
    if not isinstance(value, str) or len(value) > 500:
        raise _base_url_invalid("must be a URL of at most 500 characters")
    url = value.strip()
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise _base_url_invalid("must not contain spaces or control characters")
    if "?" in url or "#" in url:
        raise _base_url_invalid("must not have a query or fragment")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed IPv6 literal or port
        raise _base_url_invalid("must have a valid host and port (1 to 65535)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _base_url_invalid("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs; the API key field keeps them out of sight.
        raise _base_url_invalid("must not contain credentials (put the key in api_key)")
    if not parts.hostname or not _host_valid(parts.hostname) or port == 0:
        raise _base_url_invalid("must have a valid host and port (1 to 65535)")
    return (parts.scheme.lower() + url[len(parts.scheme) :]).rstrip("/")


def _fields_clean(fields: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if "base_url" in fields:
        clean["base_url"] = base_url_clean(fields["base_url"])
    if "api_key" in fields:
        key = fields["api_key"] if fields["api_key"] is not None else ""
        if not isinstance(key, str) or len(key) > 500 or any(c in key for c in "\r\n"):
            raise ApplicationError("api_key must be a single line of at most 500 characters", param="api_key")
        clean["api_key"] = key.strip()
    if "upstream_model" in fields:
        name = fields["upstream_model"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ApplicationError("upstream_model must be a model name of 1 to 200 characters", param="upstream_model")
        clean["upstream_model"] = name.strip()
    if "timeout_seconds" in fields:
        timeout = fields["timeout_seconds"]
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int)
            or not 1 <= timeout <= MAX_UPSTREAM_TIMEOUT_SECONDS
        ):
            raise ApplicationError(
                f"timeout_seconds must be a whole number from 1 to {MAX_UPSTREAM_TIMEOUT_SECONDS}",
                param="timeout_seconds",
            )
        clean["timeout_seconds"] = timeout
    for flag in ("forwards_service_tier", "enabled"):
        if flag in fields:
            if not isinstance(fields[flag], bool):
                raise ApplicationError(f"{flag} must be true or false", param=flag)
            clean[flag] = fields[flag]
    return clean


def _audit_detail(upstream: Upstream) -> dict[str, Any]:
    return {
        "model": upstream.model.slug,
        "base_url": upstream.base_url,
        "upstream_model": upstream.upstream_model,
        "timeout_seconds": upstream.timeout_seconds,
        "forwards_service_tier": upstream.forwards_service_tier,
        "enabled": upstream.enabled,
        "api_key_set": bool(upstream.api_key),
    }


@transaction.atomic
def upstream_create(
    *,
    model_slug: str,
    base_url: str,
    actor: Actor,
    api_key: str = "",
    upstream_model: str | None = None,
    timeout_seconds: int = 120,
    forwards_service_tier: bool = False,
    enabled: bool = True,
) -> Upstream:
    """Route `model_slug` to an OpenAI-compatible server; UpstreamConflict if it already has one."""
    model = AIModel.objects.filter(slug=model_slug).first()
    if model is None:
        raise ModelNotFound(f"The model '{model_slug}' does not exist.", param="model")
    clean = _fields_clean(
        {
            "base_url": base_url,
            "api_key": api_key,
            "upstream_model": upstream_model if upstream_model is not None else model_slug,
            "timeout_seconds": timeout_seconds,
            "forwards_service_tier": forwards_service_tier,
            "enabled": enabled,
        }
    )
    user = actor if isinstance(actor, User) else None
    try:
        with transaction.atomic():
            upstream = Upstream.objects.create(model=model, updated_by=user, **clean)
    except IntegrityError:
        raise UpstreamConflict(
            f"The model '{model_slug}' already has an upstream; change that one instead.", param="model"
        ) from None
    audit_record(
        actor=actor, action="upstream.create", target=f"upstream:{upstream.pk}", detail=_audit_detail(upstream)
    )
    _routes_forget()
    return upstream


@transaction.atomic
def upstream_update(*, upstream_id: int, actor: Actor, **fields: Any) -> Upstream:
    upstream = Upstream.objects.select_for_update().select_related("model").filter(pk=upstream_id).first()
    if upstream is None:
        raise UpstreamNotFound("upstream not found", param="id")
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ApplicationError(f"{sorted(unknown)[0]} cannot be changed", param=sorted(unknown)[0])
    for name, value in _fields_clean(fields).items():
        setattr(upstream, name, value)
    upstream.updated_by = actor if isinstance(actor, User) else None
    upstream.save()
    detail = _audit_detail(upstream) | {"changed": sorted(fields)}
    audit_record(actor=actor, action="upstream.update", target=f"upstream:{upstream.pk}", detail=detail)
    _routes_forget()
    return upstream


@transaction.atomic
def upstream_delete(*, upstream_id: int, actor: Actor) -> None:
    upstream = Upstream.objects.select_for_update().select_related("model").filter(pk=upstream_id).first()
    if upstream is None:
        raise UpstreamNotFound("upstream not found", param="id")
    detail = _audit_detail(upstream)
    upstream.delete()
    audit_record(actor=actor, action="upstream.delete", target=f"upstream:{upstream_id}", detail=detail)
    _routes_forget()
