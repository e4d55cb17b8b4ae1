"""The page an invitation link opens, and the session state that carries it through sign-up.

Opening the link proves the visitor reads that mailbox. A sign-up in the same session with that very address
therefore joins at once, and the address is recorded as verified (allauth's "stashed" verified email), so no
second email is needed. A sign-up with any other address is an ordinary one.
"""

from allauth.account.adapter import get_adapter
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts.models import Invitation, Membership
from accounts.selectors import invitation_by_token, invitation_state
from accounts.services import invitation_accept
from core.errors import ApplicationError
from web.context import SESSION_KEY

INVITATION_SESSION_KEY = "web_invitation_token"


def invitation_remember(request: HttpRequest, *, token: str, invitation: Invitation) -> None:
    """Keep the token for the sign-up that may follow."""
    request.session[INVITATION_SESSION_KEY] = token
    request.session["web_invitation_organization"] = invitation.organization.name


def invitation_forget(request: HttpRequest) -> None:
    request.session.pop(INVITATION_SESSION_KEY, None)
    request.session.pop("web_invitation_organization", None)


def invitation_accept_remembered(request: HttpRequest, *, user: User) -> Membership | None:
    """At sign-up: accept the invitation this session opened if it was sent to the new user's address."""
    token = request.session.get(INVITATION_SESSION_KEY)
    if not token:
        return None
    invitation = invitation_by_token(token=token)
    email = (user.email or "").lower()
    if invitation is None or invitation_state(invitation) != "pending" or invitation.email != email:
        return None
    try:
        membership = invitation_accept(token=token, user=user)
    except ApplicationError:
        return None
    # allauth records the address as verified when it sets up the new user's emails, right after this hook.
    get_adapter(request).stash_verified_email(request, invitation.email)
    invitation_forget(request)
    request.session[SESSION_KEY] = membership.organization_id
    return membership
