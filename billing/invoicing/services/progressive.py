"""Progressive billing: an organization whose postpaid debt in the running period reaches its threshold is
invoiced at once, mid-period, so the debt stays bounded.

The running period is cut at `now - INVOICE_PROGRESSIVE_SETTLE_SECONDS` (requests settling across the cut are on
the next invoice, by the ledger's clock); the cut invoice closes like any other (its lines, number, push), and the
next period starts at the cut and ends at the usual anchor boundary.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from billing.invoicing import sql
from billing.invoicing.models import OPEN_STATUSES, BillingProfile, Invoice
from billing.invoicing.services.close import CLOSE_STEPS, invoice_open, period_next
from billing.ledger.models import Wallet


def progressive_threshold(*, organization_id: int) -> int:
    own = (
        BillingProfile.objects.filter(organization_id=organization_id)
        .values_list("progressive_threshold_nano", flat=True)
        .first()
    )
    return settings.INVOICE_PROGRESSIVE_THRESHOLD_NANO if own is None else own


def period_debt(*, wallet_id: int, start: datetime, end: datetime) -> int:
    """What no grant covered among the charges booked in [start, end): the period's postpaid debt."""
    with connection.cursor() as cursor:
        cursor.execute(sql.UNFUNDED, {"wallet": wallet_id, "start": start, "end": end})
        return int(cursor.fetchone()[0])


def invoice_progressive_close(*, organization_id: int, now: datetime | None = None) -> Invoice | None:
    """Cut and close the running period now if its postpaid debt reached the threshold; None if it did not (or
    an ended period, or a close left open, comes first: the regular close handles those)."""
    now = now or timezone.now()
    if Invoice.objects.filter(organization_id=organization_id, status__in=OPEN_STATUSES).exists():
        return None
    start, end = period_next(organization_id=organization_id)
    cut = (now - timedelta(seconds=settings.INVOICE_PROGRESSIVE_SETTLE_SECONDS)).replace(microsecond=0)
    if not start < cut < end:
        return None
    wallet = Wallet.objects.filter(organization_id=organization_id).first()
    if wallet is None:
        return None
    threshold = progressive_threshold(organization_id=organization_id)
    if threshold <= 0 or period_debt(wallet_id=wallet.pk, start=start, end=cut) < threshold:
        return None
    invoice = invoice_open(organization_id=organization_id, period_start=start, period_end=cut, progressive=True)
    for step in CLOSE_STEPS:
        invoice = step(invoice_id=invoice.pk)
    return invoice


def organizations_over_threshold(*, now: datetime | None = None) -> list[int]:
    """Organizations owing anything (candidates) whose running period's debt reached their threshold."""
    now = now or timezone.now()
    cut = now - timedelta(seconds=settings.INVOICE_PROGRESSIVE_SETTLE_SECONDS)
    over = []
    for wallet_id, organization_id in Wallet.objects.filter(unfunded_nano__gt=0).values_list("id", "organization_id"):
        start, end = period_next(organization_id=organization_id)
        threshold = progressive_threshold(organization_id=organization_id)
        if start < cut < end and 0 < threshold <= period_debt(wallet_id=wallet_id, start=start, end=cut):
            over.append(organization_id)
    return over
