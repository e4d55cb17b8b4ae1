"""manage.py invoices_reconcile [--org ID] [--json]: prove every invoice against the ledger and usage."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from accounts.management.base import OperatorCommand
from billing.invoicing import selectors
from billing.invoicing.models import Invoice, MonthRollup


class Command(OperatorCommand):
    help = (
        "Check that each invoice line equals the ledger entries (or usage records, or grant draws) it names, to the "
        "nano, that every charge of a closed period is on exactly one invoice, and that each month rollup row is "
        "the sum of the day rows it names. Exits non-zero on a problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--org", type=int, help="Only this organization (default: every one with an invoice or a month rollup)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # An organization still in its first period has no invoice yet, but its month rollup may already be wrong.
        organizations = (
            [options["org"]]
            if options["org"] is not None
            else sorted(
                Invoice.objects.values_list("organization_id", flat=True)
                .order_by()
                .union(MonthRollup.objects.values_list("organization_id", flat=True).order_by())
            )
        )
        problems = {org: found for org in organizations if (found := selectors.invoices_reconcile(organization_id=org))}
        self.emit(
            {"organizations_checked": len(organizations), "problems": {str(k): v for k, v in problems.items()}},
            f"{len(organizations)} organizations checked: "
            + ("every invoice agrees with the ledger." if not problems else f"problems in {len(problems)}:")
            + "".join(f"\n  organization {org}: {p}" for org, found in problems.items() for p in found),
        )
        if problems:
            raise CommandError(f"invoices disagree with the ledger in {len(problems)} organizations")
