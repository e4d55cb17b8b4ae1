"""Members and invitations of the current organization. Everyone in it sees the list; owners change it."""

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Role
from accounts.permissions import Capability
from accounts.selectors import (
    invitation_get,
    invitation_list_open,
    invitation_state,
    membership_get,
    membership_list,
)
from accounts.services import (
    NotFound,
    invitation_create,
    invitation_resend,
    invitation_revoke,
    membership_remove,
    membership_role_change,
)
from core.errors import ApplicationError
from web.context import membership_required
from web.forms import InviteForm, RoleForm, form_error_from
from web.views.common import capabilities, membership_of, require

MEMBERS_URL = "/members/"


def _page(
    request: HttpRequest,
    *,
    invite_form: InviteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    now = timezone.now()
    invitations = [
        (inv, invitation_state(inv, now=now)) for inv in invitation_list_open(organization_id=organization_id)
    ]
    context = {
        "members": list(membership_list(organization_id=organization_id)),
        "invitations": invitations,
        "invite_form": invite_form or InviteForm(),
        "roles": Role.choices,
        "can": capabilities(request),
    }
    return render(request, "web/members/list.html", context, status=status)


@membership_required()
def member_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@membership_required()
@require_POST
def member_invite(request: HttpRequest) -> HttpResponse:
    require(request, Capability.MANAGE_MEMBERS)
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = invitation_create(
                organization_id=membership_of(request).organization_id,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except ApplicationError as error:
            form_error_from(form, error)
        else:
            messages.success(request, f"Invited {invitation.email}. The link in the email works for a few days.")
            return HttpResponseRedirect(MEMBERS_URL)
    return _page(request, invite_form=form, status=400)


@membership_required()
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    require(request, Capability.MANAGE_MEMBERS)
    organization_id = membership_of(request).organization_id
    member = membership_get(organization_id=organization_id, membership_id=membership_id)
    form = RoleForm(request.POST)
    error_message = None
    if form.is_valid():
        try:
            membership_role_change(
                organization_id=organization_id,
                membership_id=member.pk,
                role=form.cleaned_data["role"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except NotFound:
            raise Http404("No such member.") from None
        except ApplicationError as error:
            error_message = error.message
        else:
            messages.success(request, f"{member.user.email} is now {Role(form.cleaned_data['role']).label.lower()}.")
            return HttpResponseRedirect(MEMBERS_URL)
    else:
        error_message = "Choose one of the roles: " + ", ".join(label for _, label in Role.choices) + "."
    messages.error(request, f"{member.user.email}: {error_message}")
    return _page(request, status=400)


@membership_required()
@require_http_methods(["GET", "POST"])
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    """GET asks for confirmation; POST removes."""
    require(request, Capability.MANAGE_MEMBERS)
    organization_id = membership_of(request).organization_id
    member = membership_get(organization_id=organization_id, membership_id=membership_id)
    error_message = None
    if request.method == "POST":
        try:
            membership_remove(
                organization_id=organization_id,
                membership_id=member.pk,
                actor=request.user,  # type: ignore[arg-type]
            )
        except NotFound:
            raise Http404("No such member.") from None
        except ApplicationError as error:
            error_message = error.message
        else:
            messages.success(request, f"Removed {member.user.email} from the organization.")
            # Someone who removed themselves no longer sees this organization's members.
            return HttpResponseRedirect("/" if member.user_id == request.user.pk else MEMBERS_URL)
    context = {"member": member, "error": error_message}
    return render(request, "web/members/remove.html", context, status=400 if error_message else 200)


def _invitation_change(
    request: HttpRequest, invitation_id: int, change: Callable[..., object], done: str
) -> HttpResponse:
    """Revoke or resend one of the organization's invitations with the service `change`; `done` is the message
    on success, with {email} for the invited address."""
    require(request, Capability.MANAGE_MEMBERS)
    organization_id = membership_of(request).organization_id
    invitation = invitation_get(organization_id=organization_id, invitation_id=invitation_id)
    try:
        change(organization_id=organization_id, invitation_id=invitation.pk, actor=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
        return _page(request, status=400)
    messages.success(request, done.format(email=invitation.email))
    return HttpResponseRedirect(MEMBERS_URL)


@membership_required()
@require_POST
def invitation_revoke_view(request: HttpRequest, invitation_id: int) -> HttpResponse:
    return _invitation_change(
        request, invitation_id, invitation_revoke, "Revoked the invitation of {email}; its link no longer works."
    )


@membership_required()
@require_POST
def invitation_resend_view(request: HttpRequest, invitation_id: int) -> HttpResponse:
    return _invitation_change(
        request, invitation_id, invitation_resend, "Sent the invitation to {email} again, with a new link."
    )
