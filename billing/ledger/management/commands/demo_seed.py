"""manage.py demo_seed [--email E] [--staff] [--json]: the demo organization, user, credit, prices and API key."""

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from accounts.management.base import OperatorCommand
from billing.demo import DEMO_EMAIL, demo_seed
from core.money import format_amount


class Command(OperatorCommand):
    help = (
        "Create the demo organization, a demo user who can log in, its credit, the default price book and an API "
        "key. Idempotent: every run prints the same organization, login and working key (derived from SECRET_KEY)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default=DEMO_EMAIL, help=f"The demo user's email (default {DEMO_EMAIL}).")
        parser.add_argument(
            "--staff", action="store_true", help="Make the demo user staff too (pricing console, staff API)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo = demo_seed(email=options["email"], staff=options["staff"])
        login_url = f"{settings.SITE_URL.rstrip('/')}/accounts/login/"
        balance = format_amount(demo.available_nano)
        self.emit(
            {
                "organization_id": demo.organization.pk,
                "organization_name": demo.organization.name,
                "api_key": demo.secret,
                "api_key_id": demo.api_key.pk,
                "balance": balance,
                "balance_nano": demo.available_nano,
                "currency": demo.currency,
                "login": {
                    "email": demo.user.email,
                    "password": demo.password,
                    "url": login_url,
                    "staff": demo.user.is_staff,
                },
                "models": demo.models_seeded,
            },
            "\n".join(
                [
                    f"Demo organization {demo.organization.pk} ({demo.organization.name}), balance {balance} "
                    f"{demo.currency}.",
                    f"Log in at {login_url} as {demo.user.email} / {demo.password}",
                    f"API key: {demo.secret}",
                ]
            ),
        )
