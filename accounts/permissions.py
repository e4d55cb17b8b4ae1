"""What each organization role may do, as data, plus the helpers views and REST use to ask.

The capabilities are coarse on purpose: a person can read this table and know what a role means.
"""

from enum import StrEnum

from accounts.models import Membership, Role


class Capability(StrEnum):
    VIEW = "view"  # dashboard, usage, balance, keys list, members list
    MANAGE_KEYS = "manage_keys"  # create, update, rotate and revoke API keys
    MANAGE_BILLING = "manage_billing"  # top up, auto top-up, payment methods, receipts, notifications
    MANAGE_MEMBERS = "manage_members"  # invite, change roles, remove members


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.BILLING_ADMIN: frozenset({Capability.VIEW, Capability.MANAGE_BILLING}),
    Role.DEVELOPER: frozenset({Capability.VIEW, Capability.MANAGE_KEYS}),
    Role.VIEWER: frozenset({Capability.VIEW}),
}


def role_can(role: str, capability: Capability) -> bool:
    return capability in ROLE_CAPABILITIES.get(role, frozenset())


def membership_can(membership: Membership | None, capability: Capability) -> bool:
    return membership is not None and role_can(membership.role, capability)


def roles_with(capability: Capability) -> tuple[str, ...]:
    """The roles holding a capability, e.g. for ``membership_required(*roles_with(Capability.MANAGE_KEYS))``."""
    return tuple(role for role, caps in ROLE_CAPABILITIES.items() if capability in caps)
