"""Reads of an organization's members and invitations."""

import hashlib
from datetime import datetime

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Invitation, Membership, Role

# Owners first, then the roles in order of what they may do.
_ROLE_ORDER = Case(
    *(When(role=role, then=Value(rank)) for rank, role in enumerate(Role.values)),
    default=Value(len(Role.values)),
    output_field=IntegerField(),
)


def membership_list(*, organization_id: int) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization_id=organization_id)
        .select_related("user")
        .annotate(role_rank=_ROLE_ORDER)
        .order_by("role_rank", "user__email", "pk")
    )


def membership_get(*, organization_id: int, membership_id: int) -> Membership:
    """A member of this organization; any other id (unknown, or another organization's) is a 404."""
    return get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, organization_id=organization_id
    )


def invitation_list_open(*, organization_id: int) -> QuerySet[Invitation]:
    """Invitations neither accepted nor revoked (expired ones included, so they can be resent), newest first."""
    return (
        Invitation.objects.filter(organization_id=organization_id, accepted_at__isnull=True, revoked_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created_at", "-pk")
    )


def invitation_get(*, organization_id: int, invitation_id: int) -> Invitation:
    """An invitation of this organization; any other id is a 404."""
    return get_object_or_404(Invitation, pk=invitation_id, organization_id=organization_id)


def invitation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_by_token(*, token: str) -> Invitation | None:
    if not token or len(token) > 200:
        return None
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_hash=invitation_token_hash(token))
        .first()
    )


def invitation_state(invitation: Invitation, *, now: datetime | None = None) -> str:
    """ "accepted", "revoked", "expired" or "pending"."""
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= (now or timezone.now()):
        return "expired"
    return "pending"
