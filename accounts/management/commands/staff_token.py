"""manage.py staff_token --email EMAIL [--rotate] [--json]: the staff REST API token of a staff member."""

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.management.base import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Print the API token a staff member's scripts use for /api/staff/ (Authorization: Token ...), creating it "
        "if needed. --rotate replaces it (the old token stops working at once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The staff member's email (or username).")
        parser.add_argument("--rotate", action="store_true", help="Replace the token with a new one.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        login = options["email"].strip()
        user = User.objects.filter(email__iexact=login).order_by("id").first() or (
            User.objects.filter(username=login).first()
        )
        if user is None:
            raise CommandError(f"no user {login!r}; create one with `manage.py createsuperuser` first")
        if not (user.is_active and user.is_staff):
            raise CommandError(f"{login} is not an active staff member; the staff API is for staff only")
        if options["rotate"]:
            Token.objects.filter(user=user).delete()
        token, created = Token.objects.get_or_create(user=user)
        self.emit(
            {"user": user.get_username(), "token": token.key, "created": created},
            f"{token.key}\nUse it as: Authorization: Token {token.key}",
        )
