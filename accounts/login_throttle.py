"""One throttle for every way in: failed log-ins and wrong staff API tokens, counted per client address and per
account, in the shared cache (Redis), so every web process sees the same counts.

Every password check goes through `django.contrib.auth.authenticate()`: the web log-in (allauth), the Django admin
when it is served, and anything added later. `LoginThrottleBackend`, first in AUTHENTICATION_BACKENDS, stops a
locked attempt there before any password is checked, and the `user_login_failed` signal counts each failure. The
staff API's token authentication calls `throttle_check` and `failure_record` itself.

Why not allauth's ACCOUNT_RATE_LIMITS ("login_failed"): they guard only allauth's own form, not the admin or the
staff API. Why not django-axes: one failure limit for every lockout parameter (an address behind a shared NAT
would lock after as few failures as one account), and its cache store raises when Redis is down.

If the cache cannot be reached, the throttle fails open: log-ins go on unthrottled (passwords and tokens are still
checked) and a warning is logged, at most once a minute per process. It uses a cache alias of its own on the same
Redis (CACHES["login_throttle"]) whose connections time out after a second, so a Redis that hangs fails open too,
and after a failure it does not try Redis again for a few seconds, so an outage costs log-ins no waiting. Sessions
are in the database, so a Redis outage logs nobody out and stops nobody from logging in.
"""

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest

from core.outage import REDIS_ERRORS, Outage

logger = logging.getLogger(__name__)

KEY_PREFIX = "login-throttle:v1"
CACHE_ALIAS = "login_throttle"
# After a cache error, the throttle stays open for a few seconds before it tries Redis again (core.outage).
cache_outage = Outage(
    "login throttle",
    means="the cache is unreachable: log-ins are not throttled",
    retry_seconds=5.0,
    logger=logger,
)


@dataclass(frozen=True)
class Limit:
    failures: int
    window_seconds: int


def _limits() -> dict[str, Limit]:
    return {scope: Limit(*value) for scope, value in settings.LOGIN_THROTTLE.items()}


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address as allauth sees it (honouring TRUSTED_PROXY_COUNT); an IPv6 client counts as its /64,
    since one host usually holds a whole /64."""
    if request is None:
        return None
    from allauth.account.adapter import get_adapter

    try:
        raw = get_adapter().get_client_ip(request)
    except PermissionDenied:
        return None
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address)
    return str(address)


def account_key(login: str) -> str | None:
    """One key per account whichever name it is tried under (username, email, a secondary address), so the admin
    (which asks for a username) and the web log-in (an email) share its count; a login matching nobody counts under
    its own name, so guessing at unknown names is limited all the same."""
    login = login.strip().lower()
    if not login:
        return None
    user_id = (
        User.objects.filter(Q(username__iexact=login) | Q(email__iexact=login) | Q(emailaddress__email__iexact=login))
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if user_id is not None:
        return f"user:{user_id}"
    return "login:" + hashlib.sha256(login.encode()).hexdigest()


def _keys(*, address: str | None, account: str | None) -> dict[str, tuple[str, Limit]]:
    limits = _limits()
    keys = {}
    if address is not None:
        keys["address"] = (f"{KEY_PREFIX}:address:{address}", limits["address"])
    if account is not None:
        keys["account"] = (f"{KEY_PREFIX}:account:{account}", limits["account"])
    return keys


def throttle_check(*, request: HttpRequest | None, account: str | None) -> int:
    """0 if an attempt may go ahead; otherwise the seconds to wait (at most), because the client's address or the
    account has had its limit of failures."""
    keys = _keys(address=client_address(request), account=account)
    if not keys or not cache_outage.usable():
        return 0
    try:
        counts = caches[CACHE_ALIAS].get_many([key for key, _ in keys.values()])
    except REDIS_ERRORS as error:
        cache_outage.failed(error)
        return 0
    waits = [limit.window_seconds for key, limit in keys.values() if int(counts.get(key) or 0) >= limit.failures]
    return max(waits, default=0)


def failure_record(*, request: HttpRequest | None, account: str | None) -> None:
    """Count one failure against the client's address and the account. A window starts with its first failure
    (fixed windows: a lock lifts at the latest `window_seconds` after it began, whatever is tried meanwhile)."""
    if not cache_outage.usable():
        return
    cache = caches[CACHE_ALIAS]
    for key, limit in _keys(address=client_address(request), account=account).values():
        try:
            cache.add(key, 0, timeout=limit.window_seconds)
            try:
                count = cache.incr(key)
            except ValueError:  # the window ended between add and incr
                cache.set(key, 1, timeout=limit.window_seconds)
                continue
            if count == 1:
                # Django's RedisCache checks that the key exists, then INCRs: a key that expired in between comes back
                # from INCR without an expiry, and would lock for good once full. Give it its window.
                cache.touch(key, timeout=limit.window_seconds)
        except REDIS_ERRORS as error:
            cache_outage.failed(error)
            return


def credentials_login(credentials: dict[str, Any]) -> str:
    """The name an authenticate() call was tried under: allauth passes `email` (or `username`), the admin
    `username`."""
    for field in ("username", "email", "login"):
        value = credentials.get(field)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def login_failed_receiver(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """`user_login_failed`: every failed authenticate(), whichever view called it."""
    login = credentials_login(credentials)
    failure_record(request=request, account=account_key(login) if login else None)


class LoginThrottleBackend:
    """First in AUTHENTICATION_BACKENDS: refuses an attempt whose address or account is locked, before any other
    backend checks a password (PermissionDenied stops authenticate() at once). It never logs anyone in itself, so it
    has no get_user (which would also make it the backend of the test client's force_login)."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        login = credentials_login(credentials)
        if throttle_check(request=request, account=account_key(login) if login else None):
            raise PermissionDenied("too many failed log-in attempts")
        return None
