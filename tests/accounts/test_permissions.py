import pytest

from accounts.models import Membership, Role
from accounts.permissions import Capability, membership_can, role_can, roles_with

EXPECTED = {
    Role.OWNER: {Capability.VIEW, Capability.MANAGE_KEYS, Capability.MANAGE_BILLING, Capability.MANAGE_MEMBERS},
    Role.BILLING_ADMIN: {Capability.VIEW, Capability.MANAGE_BILLING},
    Role.DEVELOPER: {Capability.VIEW, Capability.MANAGE_KEYS},
    Role.VIEWER: {Capability.VIEW},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("capability", list(Capability))
def test_role_capabilities(role, capability):
    assert role_can(role, capability) is (capability in EXPECTED[role])
    assert membership_can(Membership(role=role), capability) is (capability in EXPECTED[role])


def test_unknown_role_and_no_membership_can_do_nothing():
    assert not role_can("admin", Capability.VIEW)
    assert not membership_can(None, Capability.VIEW)


def test_roles_with():
    assert roles_with(Capability.MANAGE_MEMBERS) == (Role.OWNER,)
    assert set(roles_with(Capability.MANAGE_KEYS)) == {Role.OWNER, Role.DEVELOPER}
    assert set(roles_with(Capability.VIEW)) == set(Role)
