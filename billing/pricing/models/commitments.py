"""Reserved commitments: an organization commits to a number of tokens a month (or reserves throughput, in
tokens per minute) of one model or group for a term, at a discount against on-demand prices.

The commitment is prepaid (all upfront, or each month at the month's start): its monthly fee is the committed
tokens at the offer's blended on-demand price less the discount. Usage inside the month's commitment is drawn
from what was prepaid (no credit per request); usage beyond is on demand. Unused committed tokens are not
refunded or carried over: a commitment is owed whether used or not (use-or-lose).

A reserved-throughput commitment covers, each month, what its rate can carry in a 30-day month
(tokens per minute x 43,200) and gives the gateway's rate limiter its reserved rate.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.pricing.models.scope import ScopedMixin, one_scope

# Minutes in a 30-day month: what a reserved rate of one token per minute carries in a month.
MINUTES_PER_MONTH = 30 * 24 * 60
TERMS_MONTHS = (1, 3, 12)


class CommitmentPayment(models.TextChoices):
    UPFRONT = "upfront", "All upfront"
    MONTHLY = "monthly", "Monthly"


class CommitmentOffer(ScopedMixin):
    """A commitment staff offer to customers."""

    name = models.CharField(max_length=200)
    committed_tokens_per_month = models.BigIntegerField(null=True, blank=True)
    reserved_tokens_per_minute = models.BigIntegerField(null=True, blank=True)
    term_months = models.PositiveSmallIntegerField()
    discount_bps = models.PositiveIntegerField()
    payment = models.CharField(max_length=10, choices=CommitmentPayment.choices)
    # The on-demand price of one committed token the discount is taken from (micro-units per million tokens),
    # e.g. a 3:1 blend of the model's input and output prices.
    blended_price_micro_per_mtok = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            one_scope("commitmentoffer"),
            models.CheckConstraint(
                condition=Q(committed_tokens_per_month__gt=0, reserved_tokens_per_minute__isnull=True)
                | Q(committed_tokens_per_month__isnull=True, reserved_tokens_per_minute__gt=0),
                name="commitmentoffer_tokens_or_throughput",
            ),
            models.CheckConstraint(condition=Q(term_months__in=TERMS_MONTHS), name="commitmentoffer_term_valid"),
            models.CheckConstraint(condition=Q(discount_bps__lt=10_000), name="commitmentoffer_discount_lt_100pct"),
            models.CheckConstraint(
                condition=Q(payment__in=CommitmentPayment.values), name="commitmentoffer_payment_valid"
            ),
            models.CheckConstraint(condition=Q(blended_price_micro_per_mtok__gt=0), name="commitmentoffer_price_pos"),
        ]

    @property
    def monthly_tokens(self) -> int:
        if self.committed_tokens_per_month:
            return self.committed_tokens_per_month
        return (self.reserved_tokens_per_minute or 0) * MINUTES_PER_MONTH


class CommitmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"


class Commitment(ScopedMixin):
    """An organization's purchase of an offer; its terms are copied from the offer at purchase."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="commitments")
    offer = models.ForeignKey(CommitmentOffer, on_delete=models.PROTECT, related_name="commitments")
    monthly_tokens = models.BigIntegerField()
    reserved_tokens_per_minute = models.BigIntegerField(default=0)
    term_months = models.PositiveSmallIntegerField()
    discount_bps = models.PositiveIntegerField()
    blended_price_micro_per_mtok = models.BigIntegerField()
    payment = models.CharField(max_length=10, choices=CommitmentPayment.choices)
    monthly_fee_nano = models.BigIntegerField()
    total_fee_nano = models.BigIntegerField()
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=CommitmentStatus.choices, default=CommitmentStatus.ACTIVE)
    # The purchase request's Idempotency-Key ("" without one) and a digest of what it asked for: a replay of the
    # key returns this commitment; the key with a different request is refused.
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    request_digest = models.CharField(max_length=64, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            one_scope("commitment"),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="commitment_idempotency_key_unique",
            ),
            models.CheckConstraint(condition=Q(monthly_tokens__gt=0), name="commitment_tokens_positive"),
            models.CheckConstraint(condition=Q(reserved_tokens_per_minute__gte=0), name="commitment_tpm_nonneg"),
            models.CheckConstraint(condition=Q(term_months__in=TERMS_MONTHS), name="commitment_term_valid"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="commitment_period_order"),
            models.CheckConstraint(
                condition=Q(monthly_fee_nano__gte=0, total_fee_nano=F("monthly_fee_nano") * F("term_months")),
                name="commitment_total_is_months_fees",
            ),
            models.CheckConstraint(condition=Q(status__in=CommitmentStatus.values), name="commitment_status_valid"),
        ]

    def __str__(self) -> str:
        return f"commitment {self.pk} of organization {self.organization_id}"


class ChargeStatus(models.TextChoices):
    PAID = "paid", "Paid from credit"
    # Credit did not cover it when due: still owed; retried by the billing task until an invoice collects it.
    DUE = "due", "Due"


class CommitmentCharge(models.Model):
    """A payment of a commitment: one for the whole term (upfront), or one per month (monthly)."""

    commitment = models.ForeignKey(Commitment, on_delete=models.PROTECT, related_name="charges")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    month_index = models.PositiveSmallIntegerField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    amount_nano = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=ChargeStatus.choices)
    debit_transaction_id = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    # Set when a payment still due was put on the organization's invoice at its billing period's close: it is no
    # longer retried from credit, and is paid (status paid) when the invoice is paid.
    invoiced_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["commitment_id", "month_index"]
        constraints = [
            models.UniqueConstraint(fields=["commitment", "month_index"], name="commitmentcharge_one_per_month"),
            models.CheckConstraint(condition=Q(amount_nano__gte=0), name="commitmentcharge_amount_nonneg"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="commitmentcharge_order"),
            models.CheckConstraint(
                condition=Q(status=ChargeStatus.PAID, paid_at__isnull=False, debit_transaction_id__isnull=False)
                | Q(status=ChargeStatus.DUE, paid_at__isnull=True),
                name="commitmentcharge_paid_has_debit",
            ),
        ]

    def __str__(self) -> str:
        return f"commitment {self.commitment_id} payment {self.month_index} ({self.status})"
