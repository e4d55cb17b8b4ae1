"""Stripe customers, raw webhook events, top-ups (receipts), refunds and auto top-up.

Money is integer nano-units like everywhere else; Stripe amounts are cents, so every amount charged through
Stripe is a whole number of cents (a multiple of NANO_PER_CENT), checked in the database too.

Credit moves only through the ledger (billing.ledger); these tables record what happened at Stripe and link
to the ledger by id (the ledger owns its tables, so there are no foreign keys into it).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Mod
from django.db.models.lookups import Exact

from accounts.models import Organization

# 1 cent in nano-units: Stripe charges whole cents.
NANO_PER_CENT = 10_000_000


class StripeCustomer(models.Model):
    """The Stripe customer that pays for an organization (one per organization)."""

    organization = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="stripe_customer")
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} for organization {self.organization_id}"


class StripeEvent(models.Model):
    """A verified Stripe webhook event, stored as received before it is processed (once).

    Stripe does not promise the order of events: one that cannot be applied yet (a refund or dispute of a payment
    whose `payment_intent.succeeded` has not arrived, a reinstatement before its withdrawal) is kept `waiting`, and
    applied when an event about the same PaymentIntent makes it applicable."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"
        WAITING = "waiting", "Waiting for an earlier event"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    # The body exactly as Stripe sent it (the signature covers these bytes).
    payload = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    # Why processing failed (status failed), why the event needed nothing from us (status ignored), or what it
    # waits for (status waiting).
    error = models.TextField(blank=True)
    # The PaymentIntent the event is about (the PaymentIntent itself, or the one a refund or dispute names): how a
    # waiting event is found when its payment's success arrives. Empty when the event names none.
    payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The retry sweeper looks for failed events.
            models.Index(fields=["received_at"], condition=Q(status="failed"), name="stripe_event_failed"),
            # Waiting events are looked up by their PaymentIntent when an event about it is processed.
            models.Index(fields=["payment_intent_id"], condition=Q(status="waiting"), name="stripe_event_waiting"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["received", "processed", "failed", "ignored", "waiting"]),
                name="stripe_event_status_valid",
            ),
            # Done (processed or ignored) exactly when it has a processing time.
            models.CheckConstraint(
                condition=Q(status__in=["processed", "ignored"], processed_at__isnull=False)
                | Q(status__in=["received", "failed", "waiting"], processed_at__isnull=True),
                name="stripe_event_processed_at_matches_status",
            ),
            models.CheckConstraint(condition=~Q(event_id=""), name="stripe_event_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"


# Stripe's failure codes of a failed 3-D Secure step (shown as "Authentication failed"). Ours: "abandoned" (left
# unfinished past TOPUP_ABANDON_AFTER_SECONDS), "card_not_confirmed" (the card step ended in an error).
AUTHENTICATION_FAILED_CODES = (
    "payment_intent_authentication_failure",
    "setup_intent_authentication_failure",
    "authentication_required",
)


class TopUp(models.Model):
    """One card payment for prepaid credit, by the customer on the top-up page or by auto top-up.

    Credit is granted only when Stripe's signed `payment_intent.succeeded` webhook arrives; a succeeded
    top-up is a receipt.

    Life of a manual top-up: pending (amount chosen, waiting for the card) -> processing (PaymentIntent
    confirmed, waiting for Stripe's word) or requires_action (3-D Secure in the browser) -> succeeded (webhook,
    credit granted) or failed (declined; the reason is kept). An auto top-up starts at processing.
    """

    class Kind(models.TextChoices):
        MANUAL = "manual", "Top-up"
        AUTO = "auto", "Auto top-up"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for card"
        REQUIRES_ACTION = "requires_action", "Waiting for authentication"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"

    IN_FLIGHT = (Status.PENDING, Status.REQUIRES_ACTION, Status.PROCESSING)

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="top_ups")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    amount_nano = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    stripe_setup_intent_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    # Stripe's message for the customer ("Your card was declined.") and its code ("card_declined").
    failure_message = models.TextField(blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    # billing.ledger Grant created by the webhook (an id, not a foreign key: the ledger owns its tables).
    grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    # Money returned to the card (or on its way back) by staff refunds.
    refunded_nano = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="topup_org_created"),
            # The sweeper re-sends automatic charges that never reached Stripe.
            models.Index(
                fields=["created_at"],
                condition=Q(kind="auto", status__in=["pending", "requires_action", "processing"]),
                name="topup_auto_in_flight",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["manual", "auto"]), name="topup_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "requires_action", "processing", "succeeded", "failed"]),
                name="topup_status_valid",
            ),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(
                condition=Exact(Mod("amount_nano", NANO_PER_CENT), 0), name="topup_amount_whole_cents"
            ),
            models.CheckConstraint(
                condition=Q(refunded_nano__gte=0, refunded_nano__lte=F("amount_nano")),
                name="topup_refunded_within_amount",
            ),
            # Only a paid top-up can be refunded.
            models.CheckConstraint(
                condition=Q(refunded_nano=0) | Q(status="succeeded"), name="topup_refunded_only_when_paid"
            ),
            # Paid exactly when credit was granted.
            models.CheckConstraint(
                condition=Q(status="succeeded", succeeded_at__isnull=False, grant_id__isnull=False)
                | (~Q(status="succeeded") & Q(succeeded_at__isnull=True, grant_id__isnull=True)),
                name="topup_succeeded_has_grant",
            ),
            # A charge confirmed at Stripe has a PaymentIntent.
            models.CheckConstraint(
                condition=~Q(status__in=["requires_action", "succeeded"]) | Q(stripe_payment_intent_id__isnull=False),
                name="topup_confirmed_has_payment_intent",
            ),
            # Auto top-up fires once: at most one automatic charge in flight per organization.
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(kind="auto", status__in=["pending", "requires_action", "processing"]),
                name="topup_one_auto_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.receipt_number} {self.kind} {self.amount_nano} ({self.status})"

    @property
    def receipt_number(self) -> str:
        return f"R-{self.pk:08d}"

    @property
    def amount_cents(self) -> int:
        return self.amount_nano // NANO_PER_CENT

    @property
    def in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT

    @property
    def status_label(self) -> str:
        """The status as the customer reads it: a failed attempt says how it ended when that is not a decline."""
        if self.status == self.Status.FAILED:
            if self.failure_code == "abandoned":
                return "Abandoned"
            if self.failure_code == "card_not_confirmed":
                return "Not completed"
            if self.failure_code in AUTHENTICATION_FAILED_CODES:
                return "Authentication failed"
        return str(self.get_status_display())


class Refund(models.Model):
    """Staff refund of unused paid credit: the credit leaves the wallet first, then Stripe returns the money.

    pending: the credit is out of the wallet, Stripe has not confirmed the refund yet (or could not be reached;
    a sweeper retries with the same idempotency key). succeeded: the money is on its way back to the card.
    failed: Stripe refused; the credit was put back as a new grant (`restore_grant_id`).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Refunded"
        FAILED = "failed", "Failed"

    top_up = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="refunds")
    amount_nano = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # billing.ledger: the grant the credit was taken from, the JournalTransaction that took it back, and the grant
    # that put it back when Stripe refused the refund.
    grant_id = models.BigIntegerField()
    ledger_transaction_id = models.BigIntegerField(unique=True)
    restore_grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    reason = models.CharField(max_length=500)
    error = models.TextField(blank=True)
    # The staff request's Idempotency-Key: a retried request finds this refund instead of refunding again.
    # Null only on refunds recorded before keys were required.
    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The sweeper resumes refunds that are still waiting for Stripe.
            models.Index(fields=["created_at"], condition=Q(status="pending"), name="refund_pending"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="refund_status_valid"
            ),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Exact(Mod("amount_nano", NANO_PER_CENT), 0), name="refund_amount_whole_cents"
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="refund_reason_not_empty"),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(stripe_refund_id__isnull=False),
                name="refund_succeeded_has_stripe_refund",
            ),
            # Credit is put back exactly when the refund failed.
            models.CheckConstraint(
                condition=Q(status="failed", restore_grant_id__isnull=False)
                | (~Q(status="failed") & Q(restore_grant_id__isnull=True)),
                name="refund_failed_has_restore_grant",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.pk} of {self.amount_nano} on top-up {self.top_up_id} ({self.status})"


class Dispute(models.Model):
    """A card dispute (chargeback) of a paid top-up, as Stripe reports it (`charge.dispute.*` events).

    When the bank takes the money back (`funds_withdrawn`), the top-up's unused credit leaves the wallet, up to the
    disputed amount (`taken_nano`); what of it was already spent cannot be taken back and is recorded as
    `unrecovered_nano`. When the money comes back (`funds_reinstated`, a dispute won), the credit taken is put
    back as a new grant (`restore_grant_id`). An inquiry that never withdraws funds moves no credit.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        CLOSED = "closed", "Closed"  # an inquiry closed without a chargeback

    top_up = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="disputes")
    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    amount_nano = models.BigIntegerField()
    # Stripe's reason code ("fraudulent", "product_not_received", ...).
    reason = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    funds_withdrawn = models.BooleanField(default=False)
    taken_nano = models.BigIntegerField(default=0)
    # billing.ledger: the grant that put the credit back when the funds were reinstated.
    restore_grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "won", "lost", "closed"]), name="dispute_status_valid"
            ),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="dispute_amount_positive"),
            # Credit is taken only once the funds are withdrawn, and never more than the disputed amount.
            models.CheckConstraint(
                condition=Q(taken_nano=0) | Q(funds_withdrawn=True, taken_nano__gt=0, taken_nano__lte=F("amount_nano")),
                name="dispute_taken_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"dispute {self.stripe_dispute_id} of top-up {self.top_up_id} ({self.status})"

    @property
    def unrecovered_nano(self) -> int:
        """What of the withdrawn amount could not be taken back (spent, or held by requests in flight then)."""
        return self.amount_nano - self.taken_nano if self.funds_withdrawn else 0


class ExternalRefund(models.Model):
    """A refund of a paid top-up made outside this product (in Stripe's Dashboard, say), from the `refund.*`
    webhooks that name no refund of ours.

    When Stripe reports it succeeded, the top-up's unused credit leaves the wallet, up to the refunded amount
    (`taken_nano`); what of it was already spent cannot be taken back and is recorded as `unrecovered_nano`. The
    amount counts as refunded on the top-up, so staff cannot refund the same money again. If Stripe later reports
    the refund failed (the money did not go back), the credit taken is granted again (`restore_grant_id`).
    """

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Refunded"
        FAILED = "failed", "Failed"

    top_up = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="external_refunds")
    stripe_refund_id = models.CharField(max_length=255, unique=True)
    amount_nano = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)
    taken_nano = models.BigIntegerField(default=0)
    # billing.ledger: the grant that put the credit back when Stripe reported the refund failed.
    restore_grant_id = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["succeeded", "failed"]), name="external_refund_status_valid"
            ),
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="external_refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(taken_nano__gte=0, taken_nano__lte=F("amount_nano")),
                name="external_refund_taken_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"external refund {self.stripe_refund_id} of top-up {self.top_up_id} ({self.status})"

    @property
    def unrecovered_nano(self) -> int:
        """What of the refunded amount could not be taken back (spent, or held by requests in flight then)."""
        return self.amount_nano - self.taken_nano if self.status == self.Status.SUCCEEDED else 0


class AutoTopUp(models.Model):
    """An organization's auto top-up: charge the saved card `amount` when a debit takes credit below `threshold`.
    The saved card lives here (one per organization); manual top-ups and invoices use it too."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="auto_top_up")
    enabled = models.BooleanField(default=False)
    threshold_nano = models.BigIntegerField(default=0)
    amount_nano = models.BigIntegerField(default=0)
    # The most auto top-up may charge per UTC day.
    daily_cap_nano = models.BigIntegerField(default=0)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    # The saved card as the customer recognises it on the Payment methods page (Stripe's brand, expiry).
    card_brand = models.CharField(max_length=32, blank=True)
    card_exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    # Counts card set-ups, so each SetupIntent gets an idempotency key of its own.
    card_setups = models.PositiveIntegerField(default=0)
    stripe_setup_intent_id = models.CharField(max_length=255, blank=True)
    # Why auto top-up was turned off by the system (a declined charge), shown on the page until it is re-enabled.
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(threshold_nano__gte=0), name="auto_topup_threshold_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_nano__gte=0, daily_cap_nano__gte=0), name="auto_topup_amounts_not_negative"
            ),
            models.CheckConstraint(
                condition=Exact(Mod("amount_nano", NANO_PER_CENT), 0) & Exact(Mod("daily_cap_nano", NANO_PER_CENT), 0),
                name="auto_topup_amounts_whole_cents",
            ),
            models.CheckConstraint(
                condition=Q(enabled=False)
                | (Q(amount_nano__gt=0, daily_cap_nano__gte=F("amount_nano")) & ~Q(stripe_payment_method_id="")),
                name="auto_topup_enabled_is_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"auto top-up for organization {self.organization_id} ({'on' if self.enabled else 'off'})"
