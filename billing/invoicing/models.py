"""Invoices: the product's own record of what each organization used and paid in a billing period.

An invoice is closed by a resumable state machine, one per (organization, period):

    (no row) -> closing -> draft -> finalized -> paid | uncollectible | void

`closing` is the row that claims the period; `draft` has its lines and totals (written in one transaction);
`finalized` has its gapless number and never changes again (a PostgreSQL trigger refuses any edit of its money,
lines or number; only its collection state moves on). Amounts are integer nano-units (core.money); the total due
is rounded to the currency's minor unit once, and the difference is carried to the next invoice.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now

# Nano-units per minor unit (cent) of every currency the product bills (core.money.MINOR_UNITS: all have 100).
NANO_PER_MINOR = 10_000_000


class CollectionMethod(models.TextChoices):
    # Stripe's names: the saved card is charged at once, or the invoice is sent with net terms.
    CHARGE_AUTOMATICALLY = "charge_automatically", "Charge the saved card"
    SEND_INVOICE = "send_invoice", "Send the invoice (net terms)"


class BillingProfile(models.Model):
    """How an organization is invoiced; set by staff. An organization without one has the defaults (calendar
    months, charged to the saved card)."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, related_name="billing_profile"
    )
    # Periods start on this day of the month at 00:00 UTC (1: calendar months). At most 28, so every month has it.
    anchor_day = models.PositiveSmallIntegerField(default=1)
    collection_method = models.CharField(
        max_length=20, choices=CollectionMethod.choices, default=CollectionMethod.CHARGE_AUTOMATICALLY
    )
    # Net terms of a sent invoice (send_invoice): days from finalization to its due date.
    days_until_due = models.PositiveSmallIntegerField(default=30)
    # Progressive billing: invoice at once, mid-period, when the period's postpaid debt reaches this (None: the
    # INVOICE_PROGRESSIVE_THRESHOLD setting).
    progressive_threshold_nano = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(anchor_day__gte=1, anchor_day__lte=28), name="invoicing_anchor_day"),
            models.CheckConstraint(
                condition=Q(collection_method__in=CollectionMethod.values), name="invoicing_profile_method_valid"
            ),
            models.CheckConstraint(
                condition=Q(days_until_due__gte=1, days_until_due__lte=365), name="invoicing_profile_days_due"
            ),
        ]

    def __str__(self) -> str:
        return f"billing profile of organization {self.organization_id}"


class InvoiceStatus(models.TextChoices):
    CLOSING = "closing", "Closing"
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"
    PAID = "paid", "Paid"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"
    VOID = "void", "Void"
    # A credit note's only status once written: it is never collected, so it never moves again.
    ISSUED = "issued", "Issued"


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    # A negative document that reverses named lines of one finalized invoice (issued by staff, or by a void).
    CREDIT_NOTE = "credit_note", "Credit note"


# Statuses in which an invoice is still being built, and may change.
OPEN_STATUSES = (InvoiceStatus.CLOSING, InvoiceStatus.DRAFT)


class Invoice(models.Model):
    """An invoice, or a credit note (kind): both are documents of the organization with a number, lines and totals,
    so one list shows them. A credit note's totals are the negative of what it reverses, its period the invoice's."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=20, choices=DocumentKind.choices, default=DocumentKind.INVOICE)
    wallet = models.ForeignKey("ledger.Wallet", on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=20, choices=InvoiceStatus.choices, default=InvoiceStatus.CLOSING)
    # Numbering: gapless per (issuer, year of finalization), given at finalization.
    issuer = models.CharField(max_length=40, blank=True, default="")
    sequence = models.PositiveIntegerField(null=True, blank=True)
    number = models.CharField(max_length=60, blank=True, default="")
    # Totals (nano-units): charges (>= 0) + credit applied (<= 0) + carry in = total_exact; total_minor is
    # total_exact rounded half up to minor units; carry_out = total_exact - total_minor * NANO_PER_MINOR.
    charges_nano = models.BigIntegerField(default=0)
    credit_applied_nano = models.BigIntegerField(default=0)
    carry_in_nano = models.BigIntegerField(default=0)
    total_exact_nano = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    carry_out_nano = models.BigIntegerField(default=0)
    collection_method = models.CharField(
        max_length=20, choices=CollectionMethod.choices, default=CollectionMethod.CHARGE_AUTOMATICALLY
    )
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    drafted_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    # Collection (may change after finalization; the money above may not). Stripe's invoice, once pushed.
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_status = models.CharField(max_length=20, blank=True, default="")
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_error = models.CharField(max_length=1000, blank=True, default="")
    payment_attempts = models.PositiveIntegerField(default=0)
    payment_error = models.CharField(max_length=1000, blank=True, default="")
    paid_at = models.DateTimeField(null=True, blank=True)
    # The ledger grant that booked the payment (it repays the overdraft the invoice billed first).
    payment_grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    uncollectible_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # Stripe's page where the customer can pay it (the link in dunning emails), when Stripe gives one.
    hosted_invoice_url = models.CharField(max_length=1000, blank=True, default="")
    # Cut mid-period because the postpaid debt reached the organization's threshold (progressive billing).
    progressive = models.BooleanField(default=False)
    # Dunning: the first failed payment, the retries made (steps of INVOICE_DUNNING_RETRY_DAYS), the next one,
    # and the last step an email went out for (claimed before sending, so each is sent once).
    payment_failed_at = models.DateTimeField(null=True, blank=True)
    dunning_step = models.PositiveSmallIntegerField(default=0)
    next_payment_attempt_at = models.DateTimeField(null=True, blank=True)
    dunning_emailed_step = models.SmallIntegerField(default=-1)
    # Who the invoice is addressed to: the organization's billing details as they were at finalization (legal_name,
    # address {line1, line2, city, postal_code, region, country}, tax_id {type, value}, emails); {} when it had
    # none. Frozen with the rest once finalized (trigger in migration 0006), so later edits reach the next invoice.
    billed_to = models.JSONField(default=dict, blank=True)
    # Credit notes: the invoice corrected, why (staff's reason), the caller's idempotency key (one credit note per
    # key and invoice; a void's is "void"), the ledger grant that gave the amount back (None when nothing is owed
    # back: the credit note cancels only credit applied), and Stripe's credit note when Stripe's invoice was open.
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes")
    reason = models.CharField(max_length=1000, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    credit_grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    stripe_credit_note_id = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["status", "period_end"], name="invoicing_status_end"),
            models.Index(
                fields=["next_payment_attempt_at"],
                condition=Q(next_payment_attempt_at__isnull=False),
                name="invoicing_dunning_due",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "period_start"],
                condition=Q(kind=DocumentKind.INVOICE),
                name="invoicing_one_per_period",
            ),
            models.UniqueConstraint(
                fields=["corrects", "idempotency_key"],
                condition=Q(kind=DocumentKind.CREDIT_NOTE),
                name="invoicing_credit_note_key_unique",
            ),
            models.CheckConstraint(condition=Q(kind__in=DocumentKind.values), name="invoicing_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind=DocumentKind.INVOICE, corrects__isnull=True, idempotency_key="")
                & ~Q(status=InvoiceStatus.ISSUED)
                | Q(
                    kind=DocumentKind.CREDIT_NOTE,
                    corrects__isnull=False,
                    status__in=(InvoiceStatus.CLOSING, InvoiceStatus.ISSUED),
                )
                & ~Q(idempotency_key="")
                & ~Q(reason=""),
                name="invoicing_credit_note_shape",
            ),
            models.UniqueConstraint(
                fields=["issuer", "number"], condition=~Q(number=""), name="invoicing_number_unique"
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="invoicing_period_order"),
            models.CheckConstraint(condition=Q(status__in=InvoiceStatus.values), name="invoicing_status_valid"),
            models.CheckConstraint(
                condition=Q(status__in=OPEN_STATUSES, number="", finalized_at__isnull=True)
                | Q(~Q(status__in=OPEN_STATUSES), ~Q(number=""), finalized_at__isnull=False),
                name="invoicing_numbered_when_finalized",
            ),
            models.CheckConstraint(
                condition=Q(status=InvoiceStatus.CLOSING) | Q(drafted_at__isnull=False),
                name="invoicing_drafted_at_set",
            ),
            models.UniqueConstraint(
                fields=["stripe_invoice_id"], condition=~Q(stripe_invoice_id=""), name="invoicing_stripe_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(status=InvoiceStatus.PAID) | Q(paid_at__isnull=True), name="invoicing_paid_at_when_paid"
            ),
            models.CheckConstraint(
                condition=~Q(status=InvoiceStatus.PAID) | Q(paid_at__isnull=False), name="invoicing_paid_has_paid_at"
            ),
            # An invoice charges and applies credit; a credit note reverses that, with every sign turned.
            models.CheckConstraint(
                condition=Q(kind=DocumentKind.CREDIT_NOTE) | Q(charges_nano__gte=0),
                name="invoicing_charges_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(kind=DocumentKind.CREDIT_NOTE) | Q(credit_applied_nano__lte=0),
                name="invoicing_credit_not_positive",
            ),
            models.CheckConstraint(
                condition=Q(kind=DocumentKind.CREDIT_NOTE) | Q(total_minor__gte=0), name="invoicing_total_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(kind=DocumentKind.INVOICE)
                | Q(charges_nano__lte=0, credit_applied_nano__gte=0, total_minor__lte=0),
                name="invoicing_credit_note_signs",
            ),
            models.CheckConstraint(
                condition=Q(total_exact_nano=F("charges_nano") + F("credit_applied_nano") + F("carry_in_nano")),
                name="invoicing_total_adds_up",
            ),
            models.CheckConstraint(
                condition=Q(carry_out_nano=F("total_exact_nano") - F("total_minor") * NANO_PER_MINOR),
                name="invoicing_carry_is_the_rounding",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"{self.kind} {self.pk} ({self.status})"


class InvoiceSequence(models.Model):
    """The last number given per (issuer, year, kind of document); locked while a number is given, so numbers are
    gapless. Invoices and credit notes are numbered in series of their own."""

    issuer = models.CharField(max_length=40)
    year = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=DocumentKind.choices, default=DocumentKind.INVOICE)
    last_value = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "year", "kind"], name="invoicing_sequence_unique")]

    def __str__(self) -> str:
        return f"{self.issuer} {self.kind} {self.year}: {self.last_value}"


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    PLAN_FEE = "plan_fee", "Plan fee"
    COMMITMENT_FEE = "commitment_fee", "Commitment fee"
    TIER_TRUEUP = "tier_trueup", "Volume-tier true-up"
    CHARGE = "charge", "Other charge"
    CREDIT_PAID = "credit_paid", "Paid credit applied"
    CREDIT_PROMOTIONAL = "credit_promotional", "Promotional credit applied"
    CREDIT_REFUND = "credit_refund", "Refund credit applied"
    CREDIT_PLAN_ALLOWANCE = "credit_plan_allowance", "Plan credit applied"
    CARRY = "carry", "Rounding carried from the previous invoice"
    # Shown for the record, not part of the total (credit that left the wallet is not a charge):
    REFUND = "refund", "Credit refunded to the card"
    DISPUTE = "dispute", "Credit withdrawn by a card dispute"
    # A credit note's line: minus (all or part of) the line it names on the invoice corrected.
    REVERSAL = "reversal", "Reversal of an invoice line"
    # A volume-tier schedule re-priced the period below what was charged as it went: the difference came back as
    # refund credit (spent later like any credit, so it is shown here, not counted twice).
    TIER_TRUEUP_CREDIT = "tier_trueup_credit", "Volume-tier true-up credited"
    # Committed tokens a commitment month did not use: lost (use-or-lose), and already paid by its fee.
    COMMITMENT_SHORTFALL = "commitment_shortfall", "Unused committed tokens"


CREDIT_KINDS = (
    LineKind.CREDIT_PAID,
    LineKind.CREDIT_PROMOTIONAL,
    LineKind.CREDIT_REFUND,
    LineKind.CREDIT_PLAN_ALLOWANCE,
)
# Lines that record a movement of the period without being part of the invoice's total.
RECORD_KINDS = (LineKind.REFUND, LineKind.DISPUTE, LineKind.TIER_TRUEUP_CREDIT, LineKind.COMMITMENT_SHORTFALL)
# Lines a staff credit note may reverse in part: what the invoice charged.
CHARGE_KINDS = (
    LineKind.USAGE,
    LineKind.PLAN_FEE,
    LineKind.COMMITMENT_FEE,
    LineKind.TIER_TRUEUP,
    LineKind.CHARGE,
)


class InvoiceLine(models.Model):
    """One line. Traceable: a usage line names the usage records it sums (and through them their ledger
    transactions and request ids), a charge line the journal transactions, a credit line the grant draws."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=30, choices=LineKind.choices)
    description = models.CharField(max_length=500)
    # Usage lines: model x price version x token kind x service tier x who paid (credit, quota, commitment).
    model = models.ForeignKey("pricing.AIModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    price_version = models.ForeignKey(
        "pricing.PriceVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    token_kind = models.CharField(max_length=30, blank=True, default="")
    service_tier = models.CharField(max_length=10, blank=True, default="")
    source = models.CharField(max_length=12, blank=True, default="")
    quantity = models.BigIntegerField()
    unit = models.CharField(max_length=10)  # "tokens" | "requests" | "item"
    # Token lines: the list rate (micro-units per million tokens) and the factor and discount applied to it.
    rate_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    factor_bps = models.PositiveIntegerField(null=True, blank=True)
    discount_bps = models.PositiveIntegerField(null=True, blank=True)
    # Other lines: the price of one unit.
    unit_price_nano = models.BigIntegerField(null=True, blank=True)
    amount_nano = models.BigIntegerField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    usage_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    transaction_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    draw_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # The daily rollup rows (DailyRollup) the line adds up, for the days of its period the rollup summed: what they
    # name is the line's too, so a month's line names 31 rows instead of copying their thousands of ids. The three
    # arrays above hold what the line read from the ledger itself; the whole is selectors.line_traced (in SQL, the
    # function invoicing_traced).
    rollup_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # A credit note's line: the invoice line it reverses (its amount is minus all or part of that line's).
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals")
    # A plan or commitment fee that prepaid credit could not pay (billing.pricing.services.fees): its reference.
    # The invoice's payment pays it, with a debit outside any invoice period (this line is its invoice).
    fee_ref = models.CharField(max_length=60, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind=LineKind.REVERSAL, reverses__isnull=False)
                | (~Q(kind=LineKind.REVERSAL) & Q(reverses__isnull=True)),
                name="invoicing_reversal_names_its_line",
            ),
            models.UniqueConstraint(fields=["invoice", "position"], name="invoicing_line_position_unique"),
            # A fee is invoiced once.
            models.UniqueConstraint(fields=["fee_ref"], condition=~Q(fee_ref=""), name="invoicing_line_fee_once"),
            models.CheckConstraint(
                condition=~Q(kind=LineKind.COMMITMENT_SHORTFALL) | Q(amount_nano=0),
                name="invoicing_shortfall_costs_nothing_more",
            ),
            models.CheckConstraint(condition=Q(kind__in=LineKind.values), name="invoicing_line_kind_valid"),
            models.CheckConstraint(
                condition=~Q(kind__in=(*CREDIT_KINDS, *RECORD_KINDS)) | Q(amount_nano__lte=0),
                name="invoicing_credit_line_sign",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="invoicing_line_period"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_nano}"


class Suspension(models.Model):
    """An organization's postpaid use suspended for an unpaid invoice: its overdraft withdrawn (the limit lowered
    to what it already owes, so the debt cannot grow) until the invoice is paid, when the limit comes back. Staff
    may also suspend by hand, with a reason and no invoice: only staff lift that one."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="suspensions")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="suspensions")
    # Why staff suspended it by hand (empty for dunning's, whose reason is its invoice).
    reason = models.CharField(max_length=500, blank=True, default="")
    overdraft_limit_before_nano = models.BigIntegerField()
    started_at = models.DateTimeField(db_default=Now())
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(lifted_at__isnull=True), name="invoicing_one_open_suspension"
            ),
            models.CheckConstraint(
                condition=Q(overdraft_limit_before_nano__gte=0), name="invoicing_suspension_limit_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(invoice__isnull=False) | ~Q(reason=""), name="invoicing_suspension_has_cause"
            ),
        ]

    def __str__(self) -> str:
        cause = f"invoice {self.invoice_id}" if self.invoice_id else self.reason
        return f"suspension of organization {self.organization_id} for {cause}"


class BillingDetails(models.Model):
    """Who an organization's invoices are addressed to, set by its owners and billing admins: shown on each invoice
    (snapshot in Invoice.billed_to at finalization), sent to its Stripe customer, and the addresses invoices and
    payment emails go to (empty: the owners and billing admins)."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, related_name="billing_details"
    )
    legal_name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200)
    address_line2 = models.CharField(max_length=200, blank=True, default="")
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20, blank=True, default="")
    region = models.CharField(max_length=100, blank=True, default="")
    # ISO 3166-1 alpha-2, upper case.
    country = models.CharField(max_length=2)
    # Stripe's tax ID type (billing.invoicing.taxids) and the number in the form Stripe expects; both or neither.
    tax_id_type = models.CharField(max_length=20, blank=True, default="")
    tax_id_value = models.CharField(max_length=40, blank=True, default="")
    emails = ArrayField(models.EmailField(max_length=254), default=list, blank=True)
    # Bumped by every change: the Stripe sync's idempotency keys are derived from it, so a retried sync of one
    # version repeats nothing and a new version is always sent.
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    # The version last sent to the Stripe customer, and why the last attempt failed (retried by the next change or
    # the next sync run).
    stripe_synced_version = models.PositiveIntegerField(default=0)
    stripe_sync_error = models.CharField(max_length=1000, blank=True, default="")

    class Meta:
        verbose_name_plural = "billing details"
        constraints = [
            models.CheckConstraint(condition=~Q(legal_name=""), name="invoicing_details_legal_name"),
            models.CheckConstraint(condition=Q(country__regex=r"^[A-Z]{2}$"), name="invoicing_details_country"),
            models.CheckConstraint(
                condition=Q(tax_id_type="", tax_id_value="") | Q(~Q(tax_id_type=""), ~Q(tax_id_value="")),
                name="invoicing_details_tax_id_pair",
            ),
        ]

    def __str__(self) -> str:
        return f"billing details of organization {self.organization_id}"


class BillingEmailKind(models.TextChoices):
    INVOICE_ISSUED = "invoice_issued", "Invoice issued"
    INVOICE_PAID = "invoice_paid", "Invoice paid"
    TOP_UP_RECEIPT = "top_up_receipt", "Top-up receipt"


class BillingEmail(models.Model):
    """One email about a billing event (an invoice issued or paid, a top-up's receipt). The unique key makes each
    event's email happen once: a replayed webhook or a retried task finds the row. Claimed (sent_at) before sending
    and un-claimed if sending fails, as notices are."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=BillingEmailKind.choices)
    # "<kind>:<object id>".
    key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = ArrayField(models.EmailField(max_length=254), default=list, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=BillingEmailKind.values), name="invoicing_email_kind_valid")
        ]

    def __str__(self) -> str:
        return self.key


class RollupDay(models.Model):
    """A UTC day whose ledger movements are summed in DailyRollup, for every wallet at once (written in the same
    transaction as its rows, so a day is rolled up once: the primary key refuses a second)."""

    day = models.DateField(primary_key=True)
    rolled_at = models.DateTimeField(db_default=Now())
    rows = models.PositiveIntegerField(default=0)
    # Added to its month's sums (MonthRollup) in the same transaction. A close reads a month's sums only when every
    # day of it was: a day rolled up by code that did not add it (during the deploy that brought MonthRollup) makes
    # closes of its month sum the days instead, never miss it.
    month_added = models.BooleanField(db_default=False)

    def __str__(self) -> str:
        return f"rollup of {self.day}"


# The key of a piece (see billing.invoicing.sql.PIECES): pieces of the same key add up.
PIECE_KEY = (
    "organization",
    "wallet",
    "kind",
    "description",
    "model",
    "price_version",
    "token_kind",
    "service_tier",
    "source",
    "rate_micro_per_mtok",
    "factor_bps",
    "discount_bps",
    "sort_key",
)


class RollupPiece(models.Model):
    """A piece of an organization's invoice lines (billing.invoicing.sql.PIECES) summed over a stretch of UTC days:
    its key (PIECE_KEY, the line it goes to) and its sums. A day's pieces are DailyRollup rows; a calendar month's
    are MonthRollup rows, each the sum of its days' pieces of the same key."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # NULL for the usage that cost no credit and went by its organization, not a wallet (see sql.PIECES).
    wallet = models.ForeignKey(
        "ledger.Wallet", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # An invoice line kind, or "ledger": the spent credit (amount) and what no grant covered (unfunded).
    kind = models.CharField(max_length=30)
    description = models.CharField(max_length=500, blank=True, default="")
    model = models.ForeignKey(
        "pricing.AIModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    price_version = models.ForeignKey(
        "pricing.PriceVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    token_kind = models.CharField(max_length=30, blank=True, default="")
    service_tier = models.CharField(max_length=10, blank=True, default="")
    source = models.CharField(max_length=12, blank=True, default="")
    rate_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    factor_bps = models.BigIntegerField(null=True, blank=True)
    discount_bps = models.BigIntegerField(null=True, blank=True)
    sort_key = models.CharField(max_length=200, blank=True, default="")
    tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    amount_nano = models.BigIntegerField(default=0)
    unfunded_nano = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class DailyRollup(RollupPiece):
    """What one UTC day adds to an invoice, per wallet, summed once after the day (and the close's grace window)
    is over: the pieces the close would compute from that day's raw rows (billing.invoicing.sql.PIECES), which a
    close sums for the days of its period instead of reading the rows again. Each piece names what it sums, as
    the invoice line made of it does: usage records, journal transactions, grant draws. Lines name the rows they
    add up (InvoiceLine.rollup_ids), so a row never changes and is never deleted (a trigger refuses it)."""

    day = models.DateField()
    usage_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    transaction_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    draw_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "day"], name="invoicing_rollup_org_day"),
            # The month rollup adds one day's rows (sql.MONTH_ADD): without it, a scan of every day ever rolled up.
            models.Index(fields=["day"], name="invoicing_rollup_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.amount_nano}"


class MonthRollup(RollupPiece):
    """A calendar month's (UTC) rolled-up days added up per wallet and piece key, kept up to date by the daily rollup
    in the transaction of each day it rolls up: a close of a calendar month whose days are all rolled up reads a
    few rows per organization here instead of a row per day and key in DailyRollup. `rollup_ids` are the
    DailyRollup rows summed; a line made of this row names them, not this row, so this table is a cache that
    invoices never point at (but never deleted: a close trusts it once the month's days are all rolled up)."""

    month = models.DateField()  # its first day
    rollup_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)

    class Meta:
        constraints = [
            # One row per month and piece key (NULL keys equal: a charge piece has no model), which the daily
            # rollup adds its day to.
            models.UniqueConstraint(
                fields=["month", *PIECE_KEY], nulls_distinct=False, name="invoicing_month_rollup_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.kind} {self.amount_nano}"
