"""Members and invitations: invite by email with a role, resend, revoke, accept; change a role; remove a member.

Every change to an organization's members first locks the organization's row (one lock path for all of them),
so two owners acting at once can never leave the organization without an owner, and an invitation cannot be
accepted twice.

Invitation emails go out after commit. They carry the only copy of the token (the database keeps its hash), so
they are sent from the process that made the token rather than through a task queue, which would have to store
the secret in the broker; a failed send is logged and the owner can resend.
"""

import logging
import secrets
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Role
from accounts.selectors.members import invitation_token_hash
from accounts.services.audit import audit_record
from accounts.services.organizations import role_clean
from core.errors import ApplicationError, ErrorKind

logger = logging.getLogger(__name__)

EMAIL_MAX_LENGTH = 254
TOKEN_BYTES = 32


class NotFound(ApplicationError):
    """An unknown id, or one of another organization: both answer the same."""

    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class InvitationUnusable(ApplicationError):
    """The invitation was accepted, revoked, or has expired."""

    kind = ErrorKind.GONE


def email_clean(value: object) -> str:
    if not isinstance(value, str):
        raise ApplicationError("email must be a string", param="email")
    email = value.strip().lower()
    if not email:
        raise ApplicationError("enter the email address to invite", param="email")
    if len(email) > EMAIL_MAX_LENGTH:
        raise ApplicationError(f"email must be at most {EMAIL_MAX_LENGTH} characters", param="email")
    try:
        validate_email(email)
    except ValidationError:
        raise ApplicationError(f"{value.strip()[:100]!r} is not an email address", param="email") from None
    return email


def user_has_email(user: User, email: str) -> bool:
    """Whether `email` is the user's login address or one of their verified addresses."""
    if user.email and user.email.lower() == email.lower():
        return True
    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


def invitation_expiry() -> timedelta:
    return timedelta(days=settings.INVITATION_EXPIRY_DAYS)


def _organization_lock(organization_id: int) -> Organization:
    organization = Organization.objects.select_for_update().filter(pk=organization_id).first()
    if organization is None:
        raise NotFound("organization not found", param="organization_id")
    return organization


def _pending_invitation(organization_id: int, invitation_id: int) -> Invitation:
    invitation = (
        Invitation.objects.select_for_update().filter(pk=invitation_id, organization_id=organization_id).first()
    )
    if invitation is None:
        raise NotFound("invitation not found", param="invitation_id")
    return invitation


def _email_after_commit(*, invitation: Invitation, organization: Organization, token: str) -> None:
    # The link is built from SITE_URL only: a request's Host header is chosen by whoever sends the request, and a
    # link pointing at their host would hand them the token when the invitee clicks it.
    base_url = settings.SITE_URL
    context = {
        "organization_name": organization.name,
        "role": Role(invitation.role).label,
        "invited_by": invitation.invited_by.email if invitation.invited_by else "",
        "accept_url": f"{base_url.rstrip('/')}/invitations/{token}/",
        "expires_at": invitation.expires_at,
    }
    subject = settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + render_to_string("web/email/invitation_subject.txt", context)
    body = render_to_string("web/email/invitation_message.txt", context)
    recipient = invitation.email

    def send() -> None:
        send_mail(" ".join(subject.split()), body, None, [recipient])

    transaction.on_commit(send, robust=True)


def _token_issue(invitation: Invitation, now: datetime) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation.token_hash = invitation_token_hash(token)
    invitation.sent_at = now
    invitation.expires_at = now + invitation_expiry()
    return token


@transaction.atomic
def invitation_create(*, organization_id: int, email: str, role: str, actor: User) -> Invitation:
    """Invite `email` to join with `role`; the link (on SITE_URL) is emailed after commit."""
    email = email_clean(email)
    role = role_clean(role)
    organization = _organization_lock(organization_id)
    members = Membership.objects.filter(organization_id=organization_id)
    if (
        members.filter(user__email__iexact=email).exists()
        or EmailAddress.objects.filter(
            email__iexact=email, verified=True, user__memberships__organization_id=organization_id
        ).exists()
    ):
        raise ApplicationError(
            f"{email} is already a member of this organization", param="email", code="already_member"
        )
    now = timezone.now()
    pending = (
        Invitation.objects.select_for_update()
        .filter(organization_id=organization_id, email=email, accepted_at__isnull=True, revoked_at__isnull=True)
        .first()
    )
    if pending is not None:
        if pending.expires_at > now:
            raise ApplicationError(
                f"{email} already has a pending invitation; resend it from the list below instead",
                param="email",
                code="already_invited",
            )
        # The expired invitation makes way for the new one.
        pending.revoked_at, pending.revoked_by = now, actor
        pending.save(update_fields=["revoked_at", "revoked_by"])
    invitation = Invitation(organization=organization, email=email, role=role, invited_by=actor)
    token = _token_issue(invitation, now)
    invitation.save()
    audit_record(
        actor=actor,
        action="invitation.create",
        organization_id=organization_id,
        target=f"Invitation:{invitation.pk}",
        detail={"email": email, "role": role},
    )
    _email_after_commit(invitation=invitation, organization=organization, token=token)
    return invitation


@transaction.atomic
def invitation_resend(*, organization_id: int, invitation_id: int, actor: User) -> Invitation:
    """Email a pending invitation again with a new link (the old link stops working) and a new expiry."""
    organization = _organization_lock(organization_id)
    invitation = _pending_invitation(organization_id, invitation_id)
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise ApplicationError("only a pending invitation can be resent", code="invitation_closed")
    token = _token_issue(invitation, timezone.now())
    invitation.save(update_fields=["token_hash", "sent_at", "expires_at"])
    audit_record(
        actor=actor,
        action="invitation.resend",
        organization_id=organization_id,
        target=f"Invitation:{invitation.pk}",
        detail={"email": invitation.email},
    )
    _email_after_commit(invitation=invitation, organization=organization, token=token)
    return invitation


@transaction.atomic
def invitation_revoke(*, organization_id: int, invitation_id: int, actor: User) -> Invitation:
    """Revoke a pending invitation, so its link stops working (revoking twice changes nothing)."""
    _organization_lock(organization_id)
    invitation = _pending_invitation(organization_id, invitation_id)
    if invitation.accepted_at is not None:
        raise ApplicationError(
            "this invitation was already accepted; remove the member instead", code="invitation_accepted"
        )
    if invitation.revoked_at is None:
        invitation.revoked_at, invitation.revoked_by = timezone.now(), actor
        invitation.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            actor=actor,
            action="invitation.revoke",
            organization_id=organization_id,
            target=f"Invitation:{invitation.pk}",
            detail={"email": invitation.email},
        )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the invitation's organization with its role. The user must own the invited address."""
    found = Invitation.objects.filter(token_hash=invitation_token_hash(token)).values("organization_id").first()
    if found is None:
        raise NotFound("this invitation link is not valid", param="token")
    _organization_lock(found["organization_id"])
    invitation = Invitation.objects.select_for_update().get(token_hash=invitation_token_hash(token))
    if invitation.revoked_at is not None:
        raise InvitationUnusable("this invitation was revoked; ask for a new one", code="invitation_revoked")
    if invitation.accepted_at is not None:
        raise InvitationUnusable("this invitation was already accepted", code="invitation_accepted")
    if invitation.expires_at <= timezone.now():
        raise InvitationUnusable("this invitation has expired; ask for a new one", code="invitation_expired")
    if not user_has_email(user, invitation.email):
        raise ApplicationError(
            f"this invitation was sent to {invitation.email}, but you are logged in as {user.email}; "
            "log in with that address (or sign up with it) to accept",
            code="invitation_other_email",
        )
    if Membership.objects.filter(organization_id=invitation.organization_id, user=user).exists():
        raise ApplicationError("you are already a member of this organization", code="already_member")
    membership = Membership.objects.create(organization_id=invitation.organization_id, user=user, role=invitation.role)
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=user,
        action="invitation.accept",
        organization_id=invitation.organization_id,
        target=f"Membership:{membership.pk}",
        detail={"email": invitation.email, "role": invitation.role, "invitation_id": invitation.pk},
    )
    return membership


def _member_get(organization_id: int, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_related("user").filter(pk=membership_id, organization_id=organization_id).first()
    )
    if membership is None:
        raise NotFound("member not found", param="membership_id")
    return membership


def _is_last_owner(membership: Membership) -> bool:
    if membership.role != Role.OWNER:
        return False
    owners = Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
    return not owners.exclude(pk=membership.pk).exists()


@transaction.atomic
def membership_role_change(*, organization_id: int, membership_id: int, role: str, actor: User) -> Membership:
    """Give a member another role. The last owner keeps the owner role until someone else has it."""
    role = role_clean(role)
    _organization_lock(organization_id)
    membership = _member_get(organization_id, membership_id)
    if membership.role == role:
        return membership
    if _is_last_owner(membership):
        raise ApplicationError(
            "the last owner cannot be given another role; make someone else an owner first",
            param="role",
            code="last_owner",
        )
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.role_change",
        organization_id=organization_id,
        target=f"Membership:{membership.pk}",
        detail={"email": membership.user.email, "from": previous, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, organization_id: int, membership_id: int, actor: User) -> None:
    """Remove a member from the organization. The last owner cannot be removed."""
    _organization_lock(organization_id)
    membership = _member_get(organization_id, membership_id)
    if _is_last_owner(membership):
        raise ApplicationError("the last owner cannot be removed; make someone else an owner first", code="last_owner")
    detail = {"email": membership.user.email, "role": membership.role}
    target = f"Membership:{membership.pk}"
    membership.delete()
    audit_record(actor=actor, action="membership.remove", organization_id=organization_id, target=target, detail=detail)
