"""Process stored Stripe webhook events again: the failed ones, or the ones named."""

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.payments import services
from billing.payments.models import StripeEvent


class Command(BaseCommand):
    help = "Process failed (or named) Stripe webhook events again; each event still takes effect at most once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="evt_... ids (default: all failed)")
        parser.add_argument("--limit", type=int, default=1000, help="At most this many events (default 1000).")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        event_ids: list[str] = options["event_ids"]
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        unknown = set(event_ids) - set(
            StripeEvent.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True)
        )
        if unknown:
            raise CommandError(f"no stored event with id {', '.join(sorted(unknown))}")
        events = services.stripe_events_retry(limit=options["limit"], event_ids=event_ids or None)
        outcome = [{"id": e.event_id, "type": e.type, "status": e.status, "error": e.error} for e in events]
        if options["json"]:
            self.stdout.write(json.dumps({"events": outcome}))
            return
        if not outcome:
            self.stdout.write("Nothing to process.")
        for row in outcome:
            self.stdout.write(
                f"{row['id']} {row['type']}: {row['status']}{' - ' + row['error'] if row['error'] else ''}"
            )
