"""manage.py apikey_create --org ID --name NAME [--workflow W] [--json]: create an API key and print its secret."""

from typing import Any

from django.core.management.base import CommandParser

from accounts.management.base import OperatorCommand
from accounts.services import apikey_create


class Command(OperatorCommand):
    help = "Create an API key for an organization; prints the secret (api_key with --json). It is shown only once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", type=int, required=True, help="The organization's id.")
        parser.add_argument("--name", required=True, help="A name for the key, e.g. 'production server'.")
        parser.add_argument("--workflow", default="", help="Optional project/workflow label for the key's usage.")

    def handle(self, *args: Any, **options: Any) -> None:
        api_key, secret = apikey_create(
            organization_id=options["org"], name=options["name"], workflow=options["workflow"]
        )
        self.emit(
            {
                "organization_id": api_key.organization_id,
                "api_key_id": api_key.pk,
                "key_id": api_key.key_id,
                "name": api_key.name,
                "api_key": secret,
            },
            f"Created API key {api_key.name!r} for organization {api_key.organization_id}:\n{secret}\n"
            "Store it now: only a hash is kept, it cannot be shown again.",
        )
