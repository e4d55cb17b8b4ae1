"""Reads behind the customer's invoice pages: an organization's invoices with the status a customer reads, the
running period's draft (a live total from the ledger, before any invoice row exists), and the invoice's parties.

Every read is scoped by the organization: another organization's invoice id is "not found", like an unknown one.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from accounts.models import Organization
from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import (
    NANO_PER_MINOR,
    BillingProfile,
    CollectionMethod,
    DocumentKind,
    Invoice,
    InvoiceStatus,
)
from billing.invoicing.periods import period_after
from billing.invoicing.selectors import periods_next
from billing.invoicing.services.close import minor_round
from billing.ledger.models import Wallet


class CustomerStatus:
    """What a customer reads for an invoice's state (the model's status, with "past due" and "open" told apart)."""

    BEING_PREPARED = "being prepared"
    OPEN = "open"
    PAST_DUE = "past due"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"
    # A credit note: a negative document, never collected.
    CREDIT_NOTE = "credit note"


def invoice_due_at(invoice: Invoice) -> datetime | None:
    """When a finalized invoice is due: at finalization when the saved card is charged, after its net terms when
    it is sent."""
    if invoice.finalized_at is None:
        return None
    if invoice.collection_method == CollectionMethod.SEND_INVOICE:
        return invoice.finalized_at + timedelta(days=invoice.days_until_due or settings.INVOICE_DAYS_UNTIL_DUE)
    return invoice.finalized_at


def invoice_customer_status(invoice: Invoice, *, now: datetime) -> str:
    if invoice.status in (InvoiceStatus.CLOSING, InvoiceStatus.DRAFT):
        return CustomerStatus.BEING_PREPARED
    if invoice.status == InvoiceStatus.FINALIZED:
        if invoice.total_minor == 0:
            # Nothing to collect: credit covered the period.
            return CustomerStatus.PAID
        due_at = invoice_due_at(invoice)
        failed = invoice.payment_failed_at is not None
        late = invoice.collection_method == CollectionMethod.SEND_INVOICE and due_at is not None and due_at < now
        return CustomerStatus.PAST_DUE if failed or late else CustomerStatus.OPEN
    return {
        InvoiceStatus.ISSUED: CustomerStatus.CREDIT_NOTE,
        InvoiceStatus.PAID: CustomerStatus.PAID,
        InvoiceStatus.UNCOLLECTIBLE: CustomerStatus.UNCOLLECTIBLE,
        InvoiceStatus.VOID: CustomerStatus.VOID,
    }[InvoiceStatus(invoice.status)]


def organization_invoices(*, organization_id: int) -> QuerySet[Invoice]:
    """The organization's invoices and credit notes, newest period first (the list page paginates this)."""
    return Invoice.objects.filter(organization_id=organization_id).order_by("-period_start", "-id")


def organization_invoice(*, organization_id: int, invoice_id: int) -> Invoice:
    """One invoice of the organization, with the organization loaded; InvoiceNotFound for another's or none."""
    invoice = (
        Invoice.objects.select_related("organization").filter(pk=invoice_id, organization_id=organization_id).first()
    )
    if invoice is None:
        raise InvoiceNotFound(f"No invoice {invoice_id}.", param="invoice")
    return invoice


@dataclass(frozen=True)
class RunningPeriod:
    """The period no invoice covers yet, up to now: what its invoice would say if it closed at this moment."""

    start: datetime
    end: datetime
    currency: str
    charges_nano: int
    credit_applied_nano: int  # <= 0
    carry_in_nano: int
    total_exact_nano: int
    total_minor: int  # what would be due, rounded as the close rounds it
    ended: bool  # the period is over and waits for its close (grace window)

    @property
    def due_nano(self) -> int:
        return self.total_minor * NANO_PER_MINOR

    @property
    def last_day(self) -> date:
        """The period's last UTC day (its end is the next period's first instant)."""
        return (self.end - timedelta(microseconds=1)).astimezone(UTC).date()


# The same figures the close checks its lines against (sql.LEDGER_TOTALS), for one wallet and a time range: the
# journal's spent credit, and what no grant covered of it (the unfunded draws: what the invoice asks to be paid).
_RUNNING_TOTALS = """
WITH txn AS (
    SELECT t.id, coalesce(e.amount_nano, 0) AS spent
      FROM ledger_journaltransaction t
      LEFT JOIN ledger_journalentry e ON e.transaction_id = t.id AND e.account = 'spent'
     WHERE t.wallet_id = %(wallet)s AND t.created_at >= %(start)s AND t.created_at < %(end)s
       AND t.kind IN ('capture', 'release', 'expiry', 'debit', 'refund')
)
SELECT (SELECT coalesce(sum(spent), 0) FROM txn),
       (SELECT coalesce(sum(d.amount_nano), 0)
          FROM txn t JOIN ledger_grantdraw d ON d.transaction_id = t.id
         WHERE d.grant_id IS NULL AND t.spent > 0)
"""


# Periods shown as running at most (beat closes each within its grace window, so there is one, or two just after a
# period ends; more only while closes are failing).
MAX_RUNNING_PERIODS = 12


def running_periods(*, organization_id: int, now: datetime) -> list[RunningPeriod]:
    """The organization's periods no invoice covers yet, from the next one to close up to the one running now,
    newest first, with their totals so far (empty: it has no wallet, so no usage). One query per period."""
    wallet = Wallet.objects.filter(organization_id=organization_id).order_by("id").first()
    periods = periods_next(organization_ids=[organization_id])
    if wallet is None or organization_id not in periods:
        return []
    anchor_day = (
        BillingProfile.objects.filter(organization_id=organization_id).values_list("anchor_day", flat=True).first() or 1
    )
    # The rounding carried from the invoice before, as the close carries it (none from a voided one), and from
    # each running period to the next.
    previous = (
        Invoice.objects.filter(
            organization_id=organization_id, kind=DocumentKind.INVOICE, period_end__lte=periods[organization_id][0]
        )
        .order_by("-period_end")
        .values_list("status", "carry_out_nano")
        .first()
    )
    carry_in = previous[1] if previous is not None and previous[0] != InvoiceStatus.VOID else 0
    start, end = periods[organization_id]
    running: list[RunningPeriod] = []
    with connection.cursor() as cursor:
        while start <= now and len(running) < MAX_RUNNING_PERIODS:
            cursor.execute(_RUNNING_TOTALS, {"wallet": wallet.pk, "start": start, "end": min(end, now)})
            spent, unfunded = cursor.fetchone()
            total_exact = unfunded + carry_in
            total_minor, carry_out = minor_round(total_exact)
            running.append(
                RunningPeriod(
                    start=start,
                    end=end,
                    currency=wallet.currency,
                    charges_nano=spent,
                    credit_applied_nano=unfunded - spent,
                    carry_in_nano=carry_in,
                    total_exact_nano=total_exact,
                    total_minor=max(total_minor, 0),
                    ended=end <= now,
                )
            )
            carry_in = carry_out
            start, end = period_after(anchor_day=anchor_day, end=end)
    return running[::-1]


@dataclass(frozen=True)
class Party:
    """Who issues or receives an invoice, as printed on it."""

    name: str
    address: str = ""
    tax_id: str = ""
    emails: tuple[str, ...] = ()


def invoice_issuer() -> Party:
    return Party(
        name=settings.INVOICE_ISSUER_NAME,
        address=settings.INVOICE_ISSUER_ADDRESS,
        tax_id=settings.INVOICE_ISSUER_TAX_ID,
    )


def invoice_billed_to(invoice: Invoice, organization: Organization) -> Party:
    """The billing details snapshotted on the invoice when it was finalized (`billed_to`), or the organization's
    name for invoices without them."""
    snapshot: Any = getattr(invoice, "billed_to", None) or {}
    if not isinstance(snapshot, dict):
        snapshot = {}
    emails = snapshot.get("emails") or ()
    if isinstance(emails, str):
        emails = (emails,)
    return Party(
        name=str(snapshot.get("legal_name") or organization.name),
        address=str(snapshot.get("address") or ""),
        tax_id=str(snapshot.get("tax_id") or ""),
        emails=tuple(str(email) for email in emails),
    )


@dataclass(frozen=True)
class TaxShare:
    """The tax included in a total, for issuers configured with a tax rate (INVOICE_TAX_RATE_BPS)."""

    label: str
    rate_bps: int
    amount_minor: int

    @property
    def amount_nano(self) -> int:
        return self.amount_minor * NANO_PER_MINOR


def invoice_tax(*, total_minor: int) -> TaxShare | None:
    """The tax contained in `total_minor` at the configured rate (prices are tax-inclusive: the invoice's total is
    what was charged), rounded half up to the minor unit; None when no rate is configured."""
    rate = settings.INVOICE_TAX_RATE_BPS
    if not rate:
        return None
    # total x rate / (10,000 + rate), half up, in integers.
    amount = (2 * total_minor * rate + 10_000 + rate) // (2 * (10_000 + rate))
    return TaxShare(label=settings.INVOICE_TAX_LABEL, rate_bps=rate, amount_minor=amount)
