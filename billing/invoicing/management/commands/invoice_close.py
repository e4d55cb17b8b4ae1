"""manage.py invoice_close --org ID --period YYYY-MM [--push] [--json]: close an organization's billing period into a
finalized invoice now (what Celery beat does after the grace window), or resume a close that stopped."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from accounts.management.base import OperatorCommand
from billing.invoicing import selectors, services
from billing.invoicing.documents import invoice_document
from billing.invoicing.periods import period_parse
from billing.invoicing.services.stripe_push import invoice_stripe_push


class Command(OperatorCommand):
    help = (
        "Close an organization's billing period (the one starting in --period) into a finalized invoice, or resume "
        "a close that stopped; prints the invoice and its lines. Closing a closed period changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", type=int, required=True, help="The organization's id.")
        parser.add_argument("--period", required=True, help="The month the period starts in, e.g. 2026-03.")
        parser.add_argument(
            "--push", action="store_true", help="Also push the invoice to Stripe now (beat does it otherwise)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        anchor_day = services.profile_get(organization_id=options["org"]).anchor_day
        try:
            start = period_parse(options["period"], anchor_day=anchor_day)
        except ValueError as error:
            raise CommandError(f"--period: {error}") from None
        invoice = services.invoice_close(organization_id=options["org"], period_start=start)
        if options["push"]:
            invoice = invoice_stripe_push(invoice_id=invoice.pk)
        lines = list(selectors.invoice_lines(invoice_id=invoice.pk))
        document = invoice_document(invoice, lines)
        self.emit(
            document,
            f"Invoice {invoice.number} ({invoice.status}) for organization {invoice.organization_id}, "
            f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}: {len(lines)} lines, total due "
            f"{document['total']} {invoice.currency}.",
        )
