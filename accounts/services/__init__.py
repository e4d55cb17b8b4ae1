"""Writes for organizations, members and API keys (keyword-only, typed; see the modules for details)."""

from accounts.services.apikeys import UNSET, Scopes, apikey_create, apikey_revoke, apikey_rotate, apikey_update
from accounts.services.audit import actor_label, audit_record
from accounts.services.members import (
    InvitationUnusable,
    NotFound,
    invitation_accept,
    invitation_create,
    invitation_resend,
    invitation_revoke,
    membership_remove,
    membership_role_change,
)
from accounts.services.organizations import membership_add, organization_create

__all__ = [
    "UNSET",
    "InvitationUnusable",
    "NotFound",
    "Scopes",
    "actor_label",
    "apikey_create",
    "apikey_revoke",
    "apikey_rotate",
    "apikey_update",
    "audit_record",
    "invitation_accept",
    "invitation_create",
    "invitation_resend",
    "invitation_revoke",
    "membership_add",
    "membership_remove",
    "membership_role_change",
    "organization_create",
]
