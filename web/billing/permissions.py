"""Who may use the billing pages: members whose role holds MANAGE_BILLING (owners and billing admins)."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.permissions import Capability, membership_can, roles_with
from web.context import current_membership

BILLING_ROLES = roles_with(Capability.MANAGE_BILLING)


class ManagesBilling(BasePermission):
    """DRF twin of `membership_required(*BILLING_ROLES)` for the pages' JSON endpoints; sets request.membership."""

    message = "Your role in this organization does not allow managing billing."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        membership = current_membership(request._request)
        if not membership_can(membership, Capability.MANAGE_BILLING):
            return False
        request.membership = membership  # type: ignore[attr-defined]
        return True
