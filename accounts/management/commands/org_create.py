"""manage.py org_create --name NAME [--json]: create an organization (a billing customer)."""

from typing import Any

from django.core.management.base import CommandParser

from accounts.management.base import OperatorCommand
from accounts.services import organization_create


class Command(OperatorCommand):
    help = "Create an organization; prints its id (organization_id with --json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The organization's name, e.g. 'Acme Inc'.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_create(name=options["name"])
        self.emit(
            {"organization_id": organization.pk, "name": organization.name, "currency": organization.currency},
            f"Created organization {organization.pk} ({organization.name}).",
        )
