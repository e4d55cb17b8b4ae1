"""manage.py staff_token --email EMAIL [--rotate | --revoke] [--json]: a staff member's staff REST API token."""

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from accounts.management.base import OperatorCommand
from accounts.services.stafftokens import staff_token_display, staff_token_issue, staff_token_revoke
from core.errors import ApplicationError


class Command(OperatorCommand):
    help = (
        "Make the API token a staff member's scripts use for /api/staff/ (Authorization: Token ...) and print it, "
        "once: only its hash is kept. --rotate replaces the token in force (the old one stops working at once); "
        "--revoke revokes it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The staff member's email (or username).")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true", help="Replace the token in force with a new one.")
        action.add_argument("--revoke", action="store_true", help="Revoke the token in force.")

    def handle(self, *args: Any, **options: Any) -> None:
        login = options["email"].strip()
        user = User.objects.filter(email__iexact=login).order_by("id").first() or (
            User.objects.filter(username=login).first()
        )
        if user is None:
            raise CommandError(f"no user {login!r}; create one with `manage.py createsuperuser` first")
        actor = f"cli:{user.get_username()}"
        if options["revoke"]:
            revoked = staff_token_revoke(user=user, actor=actor)
            if revoked is None:
                raise CommandError(f"{user.get_username()} has no staff token in force; nothing was revoked")
            self.emit(
                {"user": user.get_username(), "revoked": staff_token_display(revoked)},
                f"Revoked {staff_token_display(revoked)} of {user.get_username()}; it no longer works.",
            )
            return
        try:
            token, secret = staff_token_issue(user=user, replace=options["rotate"], actor=actor)
        except ApplicationError as error:
            if error.code == "token_exists":
                raise CommandError(f"{error.message} (--rotate, --revoke)") from None
            raise
        self.emit(
            {"user": user.get_username(), "token": secret, "key_id": token.key_id, "rotated": options["rotate"]},
            f"{secret}\nUse it as: Authorization: Token {secret}\nIt is shown only now: only its hash is kept.",
        )
