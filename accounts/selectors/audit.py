"""Reads of the audit log."""

from django.db.models import QuerySet

from accounts.models import AuditEvent


def audit_events(
    *,
    action_prefix: str = "",
    organization_id: int | None = None,
    model_slug: str = "",
    actor_label: str = "",
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, narrowed by what each filter names (an empty filter narrows nothing)."""
    events = AuditEvent.objects.select_related("organization").order_by("-created_at", "-id")
    if action_prefix:
        events = events.filter(action__startswith=action_prefix)
    if organization_id is not None:
        events = events.filter(organization_id=organization_id)
    if model_slug:
        events = events.filter(model_slug=model_slug)
    if actor_label:
        events = events.filter(actor_label=actor_label)
    return events
