"""The prepaid credit ledger: wallets, grants, holds and an append-only double-entry journal.

Every movement of credit is a JournalTransaction whose JournalEntry rows sum to zero. The wallet's
`available_nano` and `held_nano` are caches of the journal sums for the `available` and `held` accounts, changed
in the same database transaction as the entries and guarded by CHECK constraints.

Credit arrives in Grants. A charge (capture or debit) draws from grants in a stated order and records each draw
as a GrantDraw; a draw with no grant is unfunded (the wallet went into its overdraft) and is settled first out of
the next grant. The bookkeeping identity, checked by `selectors.wallet_reconcile`, is:

    sum(grant.remaining_nano) - wallet.unfunded_nano == wallet.available_nano + wallet.held_nano

All money is integer nano-units (see core.money).
"""

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class Account(models.TextChoices):
    """Journal accounts. `available` and `held` are the customer's; the others are where credit comes from
    (funding_*) and where it goes (spent, breakage, refunded)."""

    AVAILABLE = "available", "Available"
    HELD = "held", "Held"
    SPENT = "spent", "Spent (revenue)"
    BREAKAGE = "breakage", "Breakage (expired credit)"
    REFUNDED = "refunded", "Refunded"
    FUNDING_PAID = "funding_paid", "Funding: paid"
    FUNDING_PROMOTIONAL = "funding_promotional", "Funding: promotional"
    FUNDING_REFUND = "funding_refund", "Funding: refund credit"
    FUNDING_PLAN_ALLOWANCE = "funding_plan_allowance", "Funding: plan allowance"


class GrantKind(models.TextChoices):
    PAID = "paid", "Paid top-up"
    PROMOTIONAL = "promotional", "Promotional"
    REFUND = "refund", "Refund credit"
    PLAN_ALLOWANCE = "plan_allowance", "Plan allowance"


FUNDING_ACCOUNT = {
    GrantKind.PAID: Account.FUNDING_PAID,
    GrantKind.PROMOTIONAL: Account.FUNDING_PROMOTIONAL,
    GrantKind.REFUND: Account.FUNDING_REFUND,
    GrantKind.PLAN_ALLOWANCE: Account.FUNDING_PLAN_ALLOWANCE,
}


class TransactionKind(models.TextChoices):
    GRANT = "grant", "Grant"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture"
    RELEASE = "release", "Release"
    EXPIRY = "expiry", "Hold expiry"
    GRANT_EXPIRY = "grant_expiry", "Grant expiry"
    REFUND = "refund", "Refund"
    DEBIT = "debit", "Debit"
    ADJUSTMENT = "adjustment", "Adjustment"


class HoldStatus(models.TextChoices):
    OPEN = "open", "Open"
    CAPTURED = "captured", "Captured"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Wallet(models.Model):
    """One organization's credit in one currency. The balances are caches of the journal (see module doc)."""

    # PROTECT: financial history must never disappear with a deleted organization.
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="wallets")
    currency = models.CharField(max_length=3, default="USD")
    available_nano = models.BigIntegerField(default=0)
    held_nano = models.BigIntegerField(default=0)
    # 0 = hard stop at zero; otherwise available may go down to -overdraft_limit_nano.
    overdraft_limit_nano = models.BigIntegerField(default=0)
    # Charged credit no grant paid for yet (overdraft): the sum of the wallet's unfunded draws, settled first
    # out of the next grant.
    unfunded_nano = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "currency"], name="ledger_wallet_unique_org_currency"),
            models.CheckConstraint(
                condition=Q(available_nano__gte=-models.F("overdraft_limit_nano")),
                name="ledger_wallet_available_within_overdraft",
            ),
            models.CheckConstraint(condition=Q(held_nano__gte=0), name="ledger_wallet_held_not_negative"),
            models.CheckConstraint(
                condition=Q(overdraft_limit_nano__gte=0), name="ledger_wallet_overdraft_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"wallet {self.pk} ({self.currency}) of organization {self.organization_id}"


class JournalTransaction(models.Model):
    """One balanced movement of credit. Never updated or deleted (a database trigger enforces it on PostgreSQL);
    corrections are new transactions."""

    # Indexed by ledger_txn_wallet_id below (every index is written by every request: none twice).
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions", db_index=False)
    kind = models.CharField(max_length=20, choices=TransactionKind.choices)
    # Caller keys are stored with a kind prefix ("grant:<key>") so that two kinds of operation never collide;
    # hold movements use "hold:<hold id>:place" and "hold:<hold id>:settle" (one settlement per hold, ever).
    idempotency_key = models.CharField(max_length=300)
    actor = models.CharField(max_length=200)
    reason = models.CharField(max_length=500, blank=True, default="")
    # A free label for debits ("plan_fee", "commitment") so a statement can group them.
    category = models.CharField(max_length=40, blank=True, default="")
    # Not indexed: nothing looks transactions up by hold (a hold's are found by their keys), and holds are never
    # deleted.
    hold = models.ForeignKey(
        "Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions", db_index=False
    )
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            models.Index(fields=["wallet", "-id"], name="ledger_txn_wallet_id"),
            # The journal by time (a day's transactions, for the invoicing close and its daily rollup). BRIN, not
            # btree: the journal is append-only and booked at statement time, so its rows lie in time order on
            # disk, and a BRIN index costs a gateway call next to nothing to keep (one summary per 128 pages, each
            # summarized by autovacuum as soon as the next one is started).
            BrinIndex(fields=["created_at"], name="ledger_txn_created_brin", autosummarize=True),
        ]
        constraints = [
            # A constraint rather than unique=True: the same index without the LIKE index Django adds for unique text.
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_txn_key_unique"),
            models.CheckConstraint(condition=Q(kind__in=TransactionKind.values), name="ledger_txn_kind_valid"),
            models.CheckConstraint(condition=~Q(idempotency_key=""), name="ledger_txn_key_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"


class JournalEntry(models.Model):
    """One leg of a transaction: a signed amount on one account. The legs of a transaction sum to zero."""

    transaction = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.CharField(max_length=30, choices=Account.choices)
    amount_nano = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(account__in=Account.values), name="ledger_entry_account_valid"),
            models.CheckConstraint(condition=~Q(amount_nano=0), name="ledger_entry_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.amount_nano:+d}"


class Grant(models.Model):
    """A block of credit with an optional expiry. `remaining_nano` goes down as charges draw from it."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="grants")
    kind = models.CharField(max_length=20, choices=GrantKind.choices)
    amount_nano = models.BigIntegerField()
    remaining_nano = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    # Where the credit came from (a PaymentIntent id, a plan period...), for people and reconciliation.
    source_ref = models.CharField(max_length=200, blank=True, default="")
    transaction = models.OneToOneField(JournalTransaction, on_delete=models.PROTECT, related_name="grant")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        # No index mentions remaining_nano (not even in a condition), so the UPDATE every capture makes of it can be
        # a heap-only (HOT) update, which writes no index entries. Captures find a wallet's grants by the wallet
        # index; the expiry sweeper by expires_at.
        indexes = [models.Index(fields=["expires_at"], name="ledger_grant_expires_at")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=GrantKind.values), name="ledger_grant_kind_valid"),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="ledger_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining_nano__gte=0, remaining_nano__lte=models.F("amount_nano")),
                name="ledger_grant_remaining_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} grant {self.pk}"


class Hold(models.Model):
    """Credit reserved for a request in flight; captured (partly) or released, or expired by the sweeper."""

    # Indexed by ledger_hold_wallet_id below.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds", db_index=False)
    amount_nano = models.BigIntegerField()
    captured_nano = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.OPEN)
    idempotency_key = models.CharField(max_length=300)
    actor = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(db_default=Now())
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweeper looks for open holds past their deadline.
            models.Index(fields=["expires_at"], condition=Q(status="open"), name="ledger_hold_open_deadline"),
            models.Index(fields=["wallet", "-id"], name="ledger_hold_wallet_id"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=HoldStatus.values), name="ledger_hold_status_valid"),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="ledger_hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_nano__gte=0, captured_nano__lte=models.F("amount_nano")),
                name="ledger_hold_captured_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(status="captured") | Q(captured_nano=0), name="ledger_hold_captured_only_when_captured"
            ),
            models.CheckConstraint(
                condition=Q(status="open", settled_at__isnull=True) | Q(~Q(status="open"), settled_at__isnull=False),
                name="ledger_hold_settled_at_matches_status",
            ),
            models.CheckConstraint(condition=~Q(idempotency_key=""), name="ledger_hold_key_not_empty"),
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_hold_key_unique"),
        ]

    def __str__(self) -> str:
        return f"hold {self.pk} ({self.status})"


class GrantDraw(models.Model):
    """Which grant paid for (part of) a transaction. `grant` NULL is an unfunded draw (overdraft): positive when
    a charge outran the grants, negative when a later grant settled it (beside that grant's positive draw)."""

    transaction = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="draws")
    grant = models.ForeignKey(Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="draws")
    amount_nano = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(grant__isnull=True, amount_nano__lt=0) | Q(amount_nano__gt=0),
                name="ledger_draw_amount_sign",
            ),
        ]

    def __str__(self) -> str:
        return f"draw {self.amount_nano} from grant {self.grant_id}"
