"""The audit log: one call records who did what, to which organization and object, and why."""

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


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | str | None,
    action: str,
    organization_id: int | None = None,
    target: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event. Call it inside the transaction of the change it records, so both or neither land."""
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_label=actor_label(actor)[:200],
        action=action,
        organization_id=organization_id,
        target=target[:200],
        reason=reason[:500],
        detail=detail or {},
    )
