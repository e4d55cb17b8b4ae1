"""Endpoints: create, change, rotate the secret, delete. Input is checked here, so the page and the API refuse the
same things with the same messages."""

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from accounts.models import Organization
from accounts.services import audit_record
from billing.webhooks.errors import NotFound
from billing.webhooks.models import MAX_URL_LENGTH, SUBSCRIBABLE, DeliveryStatus, WebhookEndpoint
from billing.webhooks.signing import secret_generate
from billing.webhooks.transport import address_allowed
from core.errors import ApplicationError

MAX_ENDPOINTS = 20
LOCAL_NAMES = ("localhost", "localhost.localdomain")


class _Unset:
    """An update argument that was not given."""


UNSET: Final = _Unset()
# Who acts: a person, or a label for a program (the API names the API key), or None for the system.
Actor = User | str | None


def url_clean(value: object) -> str:
    """An absolute http(s) URL with a host and no credentials. A host that is a non-public address literal (or
    localhost) is refused here already; names are resolved and checked again at every delivery."""
    if not isinstance(value, str) or not value.strip():
        raise ApplicationError("url must be an http:// or https:// URL", param="url")
    url = value.strip()
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise ApplicationError("url must not contain spaces or control characters", param="url")
    if len(url) > MAX_URL_LENGTH:
        raise ApplicationError(f"url must be at most {MAX_URL_LENGTH} characters", param="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ApplicationError("url is not a valid URL (check the host and port)", param="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApplicationError("url must be an http:// or https:// URL with a host", param="url")
    if parts.username is not None or parts.password is not None:
        raise ApplicationError("url must not contain a user name or password", param="url")
    if parts.fragment:
        raise ApplicationError("url must not contain a #fragment", param="url")
    if port == 0:
        raise ApplicationError("url has no valid port", param="url")
    if not settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS:
        host = parts.hostname.rstrip(".").lower()
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if host in LOCAL_NAMES or host.endswith(".localhost") or (literal and not address_allowed(literal)):
            raise ApplicationError(
                "url points to a private, loopback or link-local address; webhooks are only sent to public addresses",
                param="url",
                code="private_target",
            )
    return url


def event_types_clean(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ApplicationError("event_types must be a list of event types", param="event_types")
    types = list(value)
    if not types:
        raise ApplicationError("choose at least one event type", param="event_types")
    for item in types:
        if not isinstance(item, str) or item not in SUBSCRIBABLE:
            shown = item[:60] if isinstance(item, str) else type(item).__name__
            raise ApplicationError(
                f"unknown event type {shown!r}; allowed: {', '.join(SUBSCRIBABLE)}", param="event_types"
            )
    return sorted(set(types))


def _description_clean(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
        raise ApplicationError("description must be text of at most 200 characters", param="description")
    return value.strip()


def _flag(value: object, *, param: str) -> bool:
    if not isinstance(value, bool):
        raise ApplicationError(f"{param} must be true or false", param=param)
    return value


def endpoint_of(*, organization_id: int, endpoint_id: int, lock: bool = False) -> WebhookEndpoint:
    queryset = WebhookEndpoint.objects.select_for_update() if lock else WebhookEndpoint.objects.all()
    endpoint = queryset.filter(organization_id=organization_id, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("webhook endpoint not found", param="endpoint_id")
    return endpoint


def _audit(endpoint: WebhookEndpoint, *, action: str, actor: Actor, **detail: object) -> None:
    audit_record(
        actor=actor,
        action=f"webhook.{action}",
        organization_id=endpoint.organization_id,
        target=f"WebhookEndpoint:{endpoint.pk}",
        target_label=endpoint.url[:200],
        detail=detail,
    )


@transaction.atomic
def webhook_endpoint_create(
    *,
    organization_id: int,
    actor: Actor,
    url: object,
    event_types: object,
    description: object = "",
    enabled: object = True,
) -> WebhookEndpoint:
    """A new endpoint with a fresh secret (shown to the caller; revealable later by the same roles)."""
    values = {
        "url": url_clean(url),
        "event_types": event_types_clean(event_types),
        "description": _description_clean(description),
        "enabled": _flag(enabled, param="enabled"),
    }
    # The organization row is the lock that keeps two concurrent creations under the cap.
    if not Organization.objects.select_for_update().filter(pk=organization_id).exists():
        raise NotFound("organization not found", param="organization_id")
    if WebhookEndpoint.objects.filter(organization_id=organization_id).count() >= MAX_ENDPOINTS:
        raise ApplicationError(
            f"an organization can have at most {MAX_ENDPOINTS} webhook endpoints; delete one first",
            code="too_many_endpoints",
        )
    endpoint = WebhookEndpoint.objects.create(
        organization_id=organization_id,
        secret=secret_generate(),
        created_by=actor if isinstance(actor, User) else None,
        **values,
    )
    _audit(endpoint, action="create", actor=actor, **values)
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    organization_id: int,
    endpoint_id: int,
    actor: Actor,
    url: object = UNSET,
    event_types: object = UNSET,
    description: object = UNSET,
    enabled: object = UNSET,
) -> WebhookEndpoint:
    """Change what is given. Deliveries already recorded keep going to the endpoint (to its new URL); disabling it
    gives up its pending deliveries."""
    endpoint = endpoint_of(organization_id=organization_id, endpoint_id=endpoint_id, lock=True)
    changes: dict[str, object] = {}
    if not isinstance(url, _Unset):
        changes["url"] = url_clean(url)
    if not isinstance(event_types, _Unset):
        changes["event_types"] = event_types_clean(event_types)
    if not isinstance(description, _Unset):
        changes["description"] = _description_clean(description)
    if not isinstance(enabled, _Unset):
        changes["enabled"] = _flag(enabled, param="enabled")
    for field, value in changes.items():
        setattr(endpoint, field, value)
    endpoint.save()
    if changes.get("enabled") is False:
        endpoint.deliveries.filter(status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="the endpoint was disabled"
        )
    _audit(endpoint, action="update", actor=actor, **changes)
    return endpoint


@transaction.atomic
def webhook_endpoint_secret_rotate(*, organization_id: int, endpoint_id: int, actor: Actor) -> WebhookEndpoint:
    """A new secret; deliveries from now on (retries included) are signed with it."""
    endpoint = endpoint_of(organization_id=organization_id, endpoint_id=endpoint_id, lock=True)
    endpoint.secret = secret_generate()
    endpoint.save(update_fields=["secret", "updated_at"])
    _audit(endpoint, action="secret_rotate", actor=actor)
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, organization_id: int, endpoint_id: int, actor: Actor) -> None:
    """Delete an endpoint with its delivery log (the events stay: other endpoints may have received them)."""
    endpoint = endpoint_of(organization_id=organization_id, endpoint_id=endpoint_id, lock=True)
    _audit(endpoint, action="delete", actor=actor, url=endpoint.url)
    endpoint.delete()
