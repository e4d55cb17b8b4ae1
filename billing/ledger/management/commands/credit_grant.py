"""manage.py credit_grant --org ID --amount 12.50 [--kind paid|promotional|refund] [--expires DATE]
[--idempotency-key K] [--reason R] [--json]: add credit to an organization's wallet."""

import getpass
import uuid
from typing import Any

from django.core.management.base import CommandParser

from accounts.management.base import OperatorCommand, amount_argument, moment_argument
from billing.ledger import selectors, services
from billing.ledger.models import GrantKind
from core.money import format_amount

KINDS = (GrantKind.PAID.value, GrantKind.PROMOTIONAL.value, GrantKind.REFUND.value)


class Command(OperatorCommand):
    help = "Grant credit to an organization; prints the new balance. Replaying an idempotency key grants nothing new."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", type=int, required=True, help="The organization's id.")
        parser.add_argument("--amount", required=True, help="In the currency's main unit, e.g. 12.50.")
        parser.add_argument("--kind", choices=KINDS, default=GrantKind.PAID.value, help="Default: paid.")
        parser.add_argument(
            "--expires", help="When the credit expires: an ISO date (midnight UTC starting that day) or date and time."
        )
        parser.add_argument(
            "--idempotency-key",
            help="Makes a retry safe: the same key never grants twice. Default: a new key (every run grants).",
        )
        parser.add_argument("--reason", default="", help="Why, for the journal (e.g. a ticket number).")
        parser.add_argument("--actor", help="Who is granting, for the journal. Default: cli:<login name>.")

    def handle(self, *args: Any, **options: Any) -> None:
        amount_nano = amount_argument(options["amount"])
        expires_at = moment_argument(options["expires"], name="--expires") if options["expires"] else None
        key = options["idempotency_key"] or f"cli:{uuid.uuid4()}"
        result = services.grant_create(
            organization_id=options["org"],
            kind=options["kind"],
            amount_nano=amount_nano,
            idempotency_key=key,
            actor=options["actor"] or f"cli:{_login_name()}",
            expires_at=expires_at,
            reason=options["reason"],
        )
        balance = selectors.wallet_balance(organization_id=options["org"])
        grant = result.grant
        self.emit(
            {
                "organization_id": options["org"],
                "grant_id": grant.pk,
                "created": result.created,
                "kind": grant.kind,
                "amount": format_amount(grant.amount_nano),
                "amount_nano": grant.amount_nano,
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                "idempotency_key": key,
                "currency": balance.currency,
                "balance": format_amount(balance.available_nano),
                "balance_nano": balance.available_nano,
            },
            (
                f"Granted {format_amount(grant.amount_nano)} {balance.currency} ({grant.kind}) to organization "
                f"{options['org']}"
                if result.created
                else f"Already granted under this idempotency key (grant {grant.pk}); nothing new was granted"
            )
            + f". Balance: {format_amount(balance.available_nano)} {balance.currency}.",
        )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"
