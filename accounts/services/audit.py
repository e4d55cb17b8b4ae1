"""The audit log: one call records who did what, to which organization and object, why, and what changed."""

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from accounts.models import AuditEvent

SYSTEM = "system"


def actor_label(actor: AbstractBaseUser | AnonymousUser | str | None) -> str:
    """How an actor is written in the journal and the audit log: a user's email or username, or a name."""
    if actor is None or isinstance(actor, AnonymousUser):
        return SYSTEM
    if isinstance(actor, str):
        return actor or SYSTEM
    return getattr(actor, "email", "") or actor.get_username()


def _plain(value: Any) -> Any:
    """A value as JSON keeps it: times as ISO 8601 text, decimals as text, containers walked."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def audit_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The fields whose value differs between two snapshots, as {field: {"before": old, "after": new}}.

    A snapshot of None is "nothing there" (before a creation): every field of the other side is a change.
    Fields keep the order of `after` (then those only in `before`), so a page lists them as the service wrote them.
    """
    old, new = _plain(dict(before or {})), _plain(dict(after or {}))
    fields = [*new, *(f for f in old if f not in new)]
    return {
        field: {"before": old.get(field), "after": new.get(field)}
        for field in fields
        if old.get(field) != new.get(field)
    }


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | str | None,
    action: str,
    organization_id: int | None = None,
    target: str = "",
    target_label: str = "",
    model_slug: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event. Call it inside the transaction of the change it records, so both or neither land.

    `reason` is the note or reason the person typed (always pass it on when the action took one);
    `before` / `after` are snapshots of the object's fields around the change, of which only the fields that
    differ are kept; `target_label` names the target in words, `model_slug` the AI model it concerns.
    """
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_label=actor_label(actor)[:200],
        action=action,
        organization_id=organization_id,
        target=target[:200],
        target_label=target_label[:300],
        model_slug=(model_slug or "")[:200],
        reason=(reason or "")[:500],
        detail=_plain(detail or {}),
        changes=audit_changes(before, after) if before is not None or after is not None else {},
    )
