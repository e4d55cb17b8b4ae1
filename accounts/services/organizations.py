from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from accounts.models import Membership, Organization, Role
from core.errors import ApplicationError

NAME_MAX_LENGTH = 200


def name_clean(value: object, *, param: str = "name", max_length: int = NAME_MAX_LENGTH) -> str:
    """A person-entered name: a string, trimmed, not empty, not too long."""
    if not isinstance(value, str):
        raise ApplicationError(f"{param} must be a string", param=param)
    value = value.strip()
    if not value:
        raise ApplicationError(f"{param} must not be empty", param=param)
    if len(value) > max_length:
        raise ApplicationError(f"{param} must be at most {max_length} characters", param=param)
    return value


def role_clean(role: object) -> str:
    if role not in Role.values:
        raise ApplicationError(f"role must be one of {', '.join(Role.values)}", param="role")
    return str(role)


@transaction.atomic
def organization_create(*, name: str, owner: User | None = None) -> Organization:
    organization = Organization.objects.create(name=name_clean(name))
    if owner is not None:
        Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    return organization


def membership_add(*, organization_id: int, user: User, role: str) -> Membership:
    role = role_clean(role)
    if not Organization.objects.filter(pk=organization_id).exists():
        raise ApplicationError("organization not found", param="organization_id", code="not_found")
    try:
        # The savepoint keeps a caller's transaction usable after a duplicate.
        with transaction.atomic():
            return Membership.objects.create(organization_id=organization_id, user=user, role=role)
    except IntegrityError:
        raise ApplicationError(
            f"{user.get_username()} is already a member of this organization", code="already_member"
        ) from None
