"""/invitations/<token>/: see an invitation, and accept it (logged in) or log in / sign up to accept it."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from accounts.selectors import invitation_by_token, invitation_state
from accounts.services import invitation_accept
from accounts.services.members import user_has_email
from core.errors import ApplicationError
from web.context import SESSION_KEY
from web.invitations import invitation_forget, invitation_remember


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_show(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_by_token(token=token)
    if invitation is None:
        raise Http404("This invitation link is not valid.")
    state = invitation_state(invitation)
    user = request.user
    if state == "accepted" and user.is_authenticated and invitation.accepted_by_id == user.pk:
        request.session[SESSION_KEY] = invitation.organization_id
        return HttpResponseRedirect("/")
    role = str(Role(invitation.role).label)
    context = {"invitation": invitation, "state": state, "role": role}
    if state != "pending":
        return render(request, "web/invitations/closed.html", context, status=410)
    if not user.is_authenticated:
        invitation_remember(request, token=token, invitation=invitation)
        return render(request, "web/invitations/show.html", context)
    context["email_matches"] = user_has_email(user, invitation.email)  # type: ignore[arg-type]
    if request.method == "POST":
        try:
            membership = invitation_accept(token=token, user=user)  # type: ignore[arg-type]
        except ApplicationError as error:
            context["error"] = error.message
            return render(request, "web/invitations/show.html", context, status=400)
        invitation_forget(request)
        request.session[SESSION_KEY] = membership.organization_id
        messages.success(request, f"You joined {invitation.organization.name} as {role.lower()}.")
        return HttpResponseRedirect("/")
    return render(request, "web/invitations/show.html", context)
