"""What every operator command shares (see docs/operations.md): `--json` output, and failures as one clear
line on stderr with a non-zero exit status, never a traceback."""

import json
from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.errors import ApplicationError
from core.money import AmountError, parse_amount

# Service parameters as the command-line options operators typed.
OPTION_OF_PARAM = {
    "organization_id": "--org",
    "idempotency_key": "--idempotency-key",
    "expires_at": "--expires",
    "amount": "--amount",
    "kind": "--kind",
    "name": "--name",
    "workflow": "--workflow",
}


class OperatorCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--json", action="store_true", help="Print the result as JSON (for scripts).")
        return parser

    def execute(self, *args: Any, **options: Any) -> str | None:
        self.as_json = bool(options.get("json"))
        try:
            return super().execute(*args, **options)
        except ApplicationError as error:
            # A business rule said no (unknown organization, idempotency conflict...): the message is for people.
            param = f" ({OPTION_OF_PARAM.get(error.param, error.param)})" if error.param else ""
            raise CommandError(f"{error.message}{param}") from None

    def emit(self, data: dict[str, Any], text: str) -> None:
        """The result: JSON with --json, otherwise a sentence for a person."""
        if self.as_json:
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            self.stdout.write(text)


def amount_argument(value: str, *, name: str = "--amount") -> int:
    """A decimal amount in the currency's main unit ("12.50") -> nano-units, or a CommandError saying why not."""
    try:
        return parse_amount(value)
    except AmountError as error:
        raise CommandError(f"{name}: {error}") from None


def moment_argument(value: str, *, name: str) -> datetime:
    """An ISO date (2025-12-31: midnight UTC at the start of that day) or date and time (UTC unless an offset is
    given) -> an aware datetime."""
    try:
        if len(value.strip()) == 10:
            return datetime.combine(date.fromisoformat(value.strip()), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(f"{name}: {value!r} is not an ISO date (2025-12-31) or date and time") from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
