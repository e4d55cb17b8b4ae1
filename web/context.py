"""The organization a web request acts for.

A user may belong to several organizations. The one they are looking at is kept in the session and
validated against their memberships on every request, so a stale or forged choice falls back to the
user's first membership instead of leaking another organization's data.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.ids import is_id_text
from accounts.models import Membership
from accounts.permissions import Capability, membership_can
from billing.invoicing.selectors import invoice_in_dunning

SESSION_KEY = "web_organization_id"
_CACHE_ATTR = "_current_membership"

# First path segment -> the navigation entry it belongs to.
_NAV_SECTIONS = {
    "usage": "usage",
    "keys": "keys",
    "members": "members",
    "billing": "billing",
    "pricing": "pricing",
    "settings": "settings",
    "organizations": "settings",
}


def memberships_for(request: HttpRequest) -> list[Membership]:
    """The user's memberships, oldest first (the first one is the default organization)."""
    user = request.user
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user_id=user.pk).select_related("organization").order_by("created_at", "pk"))


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership (organization and role) this request acts for, or None without any membership."""
    if hasattr(request, _CACHE_ATTR):
        return getattr(request, _CACHE_ATTR)
    memberships = memberships_for(request)
    chosen = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    membership = next((m for m in memberships if m.organization_id == chosen), None)
    if membership is None and memberships:
        membership = memberships[0]
    setattr(request, _CACHE_ATTR, membership)
    setattr(request, "_memberships", memberships)  # noqa: B010  (read back by the template context)
    return membership


def membership_required(*roles: str) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Require a logged-in user with a membership; with roles given, the current role must be one of them.

    The view finds the membership on `request.membership`.
    """

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = current_membership(request)
            if membership is None:
                # Everyone removed from their last organization can start a new one.
                messages.info(request, "You are not a member of any organization yet. Create one to continue.")
                return HttpResponseRedirect("/organizations/new/")
            if roles and membership.role not in roles:
                raise PermissionDenied("Your role in this organization does not allow this page.")
            request.membership = membership  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    """Switch the current organization; only organizations the user belongs to can be chosen."""
    if not request.user.is_authenticated:
        return redirect_to_login("/")
    raw = request.POST.get("organization_id", "")
    if not is_id_text(raw):
        raise Http404("No such organization.")
    organization_id = int(raw)
    membership = next((m for m in memberships_for(request) if m.organization_id == organization_id), None)
    if membership is None:
        # Another organization's id looks exactly like one that does not exist.
        raise Http404("No such organization.")
    request.session[SESSION_KEY] = membership.organization_id
    if hasattr(request, _CACHE_ATTR):
        delattr(request, _CACHE_ATTR)
    messages.success(request, f"Now working in {membership.organization.name}.")
    return HttpResponseRedirect(_safe_next(request))


def web(request: HttpRequest) -> dict[str, Any]:
    """Template context: the current membership, all memberships (for the switcher) and the nav section."""
    segment = request.path.strip("/").split("/", 1)[0]
    context: dict[str, Any] = {"nav_section": _NAV_SECTIONS.get(segment, "")}
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        context["current_membership"] = current_membership(request)
        context["memberships"] = getattr(request, "_memberships", [])
        membership = context["current_membership"]
        if membership is not None:  # the unpaid-invoice banner (dunning); its payment links for who may pay
            context["unpaid_invoice"] = invoice_in_dunning(organization_id=membership.organization_id)
            context["can_manage_billing"] = membership_can(membership, Capability.MANAGE_BILLING)
    return context
