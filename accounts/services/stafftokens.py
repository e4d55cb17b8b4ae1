"""Staff REST API tokens: issue (and rotate), revoke, and note their use. Only a hash of a token is stored."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts import keyformat
from accounts.models import StaffToken
from accounts.services.audit import audit_record
from core.errors import ApplicationError

# last_used_at is written at most this often per token: a write on every request would cost more than it tells.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def staff_token_display(token: StaffToken) -> str:
    """How a token is named where its secret is gone (audit log, command output)."""
    if token.key_id.startswith("legacy-"):
        return f"token carried over from an earlier version ({token.key_id})"
    return keyformat.secret_display(token.key_id, prefix=keyformat.STAFF_PREFIX)


def _audit(token: StaffToken, *, action: str, actor: User | str | None) -> None:
    audit_record(
        actor=actor,
        action=f"staff_token.{action}",
        target=f"StaffToken:{token.pk}",
        detail={"user": token.user.get_username(), "token": staff_token_display(token)},
    )


def _in_force(user: User) -> StaffToken | None:
    # The row lock makes two concurrent issues for one user queue; the partial unique constraint backs it.
    return StaffToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True).first()


@transaction.atomic
def staff_token_issue(*, user: User, replace: bool, actor: User | str | None) -> tuple[StaffToken, str]:
    """A new token for an active staff member; the returned secret exists nowhere else.

    With `replace`, a token in force is revoked at once (rotation); without, having one is refused, since its
    secret cannot be shown again.
    """
    if not (user.is_active and user.is_staff):
        raise ApplicationError(f"{user.get_username()} is not an active staff member; the staff API is for staff only")
    current = _in_force(user)
    if current is not None:
        if not replace:
            raise ApplicationError(
                f"{user.get_username()} already has a staff token ({staff_token_display(current)}), and it cannot be "
                "shown again: rotate it to get a new one (the old one stops working at once), or revoke it",
                code="token_exists",
            )
        _revoke(current, actor=actor)
    key_id, secret = keyformat.secret_generate(prefix=keyformat.STAFF_PREFIX)
    token = StaffToken.objects.create(user=user, key_id=key_id, secret_hash=keyformat.secret_hash(secret))
    _audit(token, action="rotate" if current is not None else "create", actor=actor)
    return token, secret


def _revoke(token: StaffToken, *, actor: User | str | None) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    _audit(token, action="revoke", actor=actor)


@transaction.atomic
def staff_token_revoke(*, user: User, actor: User | str | None) -> StaffToken | None:
    """Revoke the user's token in force (it stops working at once); None if there was none."""
    token = _in_force(user)
    if token is not None:
        _revoke(token, actor=actor)
    return token


def staff_token_used(*, token: StaffToken) -> None:
    """Note that a token was used, at most once a minute (a conditional UPDATE, so concurrent requests write once)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_GRANULARITY:
        return
    StaffToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - LAST_USED_GRANULARITY).update(
        last_used_at=now
    )
    token.last_used_at = now
