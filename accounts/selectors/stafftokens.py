"""Staff REST API token authentication: a secret in, the token in force and its user out (or None)."""

import re

from accounts import keyformat
from accounts.models import StaffToken

# Tokens made by earlier versions (Django REST framework's authtoken): 40 hex characters, stored only as their
# hash since accounts migration 0005, so scripts that hold one keep working until it is rotated or revoked.
LEGACY_TOKEN_RE = re.compile(r"^[0-9a-f]{40}$")


def staff_token_authenticate(*, secret: str) -> StaffToken | None:
    """The token in force whose secret this is, with its user, if that user is active; None otherwise.

    A malformed secret (wrong prefix, length or checksum) is refused without touching the database.
    """
    if keyformat.secret_key_id(secret, prefix=keyformat.STAFF_PREFIX) is None and not LEGACY_TOKEN_RE.match(secret):
        return None
    return (
        StaffToken.objects.select_related("user")
        .filter(secret_hash=keyformat.secret_hash(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
