"""Usage records: one row per metered request (gateway call or server-to-server event).

A record keeps counts and metadata only, never prompt or completion text. It is written in the same
database transaction that captures (or releases) the request's hold, so the usage table and the ledger
always agree.

At scale this table is the one to partition by month (PostgreSQL declarative partitioning on `created_at`);
the indexes below are the ones the dashboard, CSV export and invoicing read by.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class UsageSource(models.TextChoices):
    GATEWAY = "gateway", "Gateway"
    METERING = "metering", "Reported usage event"


class UsageStatus(models.TextChoices):
    OK = "ok", "Completed"
    # The answer was cut: the upstream went past max_tokens (charged up to max_tokens), or the call reached
    # GATEWAY_MAX_CALL_SECONDS (charged for what was delivered).
    CUT = "cut", "Cut (max_tokens or time limit)"
    # The client went away mid-stream: charged for what was delivered.
    CLIENT_DISCONNECTED = "client_disconnected", "Client disconnected"
    # Upstream failures are never charged.
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    UPSTREAM_TIMEOUT = "upstream_timeout", "Upstream timeout"


class UsageRecord(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="usage")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="usage"
    )
    source = models.CharField(max_length=10, choices=UsageSource.choices, default=UsageSource.GATEWAY)
    # The gateway's request id (also sent to the client), or "<source>:<event id>" for reported events:
    # unique, so a replayed event is recorded (and charged) once.
    request_id = models.CharField(max_length=200, unique=True)
    endpoint = models.CharField(max_length=20)
    workflow = models.CharField(max_length=100, blank=True, default="")
    model = models.ForeignKey("pricing.AIModel", on_delete=models.PROTECT, related_name="usage")
    service_tier = models.CharField(max_length=10, default="default")
    # Who answered (api.gateway.upstreams.served_by: "demo" or the model server's host name); "" for reported events.
    served_by = models.CharField(max_length=200, blank=True, default="", db_default="")
    status = models.CharField(max_length=24, choices=UsageStatus.choices)
    # What was billed: the upstream's figures when it reported them, else tiktoken's.
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    # Of the output tokens, those the model server reported as reasoning (billed at the reasoning price).
    # (db_default: a process still running the code before this column writes records too, during a deploy.)
    reasoning_tokens = models.BigIntegerField(default=0, db_default=0)
    # tiktoken's own counts, kept beside the billed figures; a large difference sets `drift_flagged`.
    estimated_input_tokens = models.BigIntegerField(default=0)
    estimated_output_tokens = models.BigIntegerField(default=0)
    usage_reported = models.BooleanField(default=False)
    drift_flagged = models.BooleanField(default=False)
    price_version = models.ForeignKey(
        "pricing.PriceVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="usage"
    )
    # Credit taken from the wallet, in nano-units; tokens covered by a plan's quota or a commitment cost no credit.
    charge_nano = models.BigIntegerField(default=0)
    quota_tokens = models.BigIntegerField(default=0)
    commitment_tokens = models.BigIntegerField(default=0)
    # The rating's charge lines, as JSON, for statements and audits.
    lines = models.JSONField(default=list, blank=True)
    # The ledger hold this request placed (an id, not a foreign key: reported events have none).
    hold_id = models.BigIntegerField(null=True, blank=True, unique=True)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"], name="usage_org_created"),
            models.Index(fields=["api_key", "created_at"], name="usage_key_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=UsageSource.values), name="usage_source_valid"),
            models.CheckConstraint(condition=Q(status__in=UsageStatus.values), name="usage_status_valid"),
            models.CheckConstraint(
                condition=Q(
                    input_tokens__gte=0,
                    cached_input_tokens__gte=0,
                    output_tokens__gte=0,
                    reasoning_tokens__gte=0,
                    estimated_input_tokens__gte=0,
                    estimated_output_tokens__gte=0,
                    quota_tokens__gte=0,
                    commitment_tokens__gte=0,
                ),
                name="usage_counts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(cached_input_tokens__lte=models.F("input_tokens")), name="usage_cached_within_input"
            ),
            models.CheckConstraint(
                condition=Q(reasoning_tokens__lte=models.F("output_tokens")), name="usage_reasoning_within_output"
            ),
            models.CheckConstraint(condition=Q(charge_nano__gte=0), name="usage_charge_not_negative"),
            # Failed upstream calls are never charged.
            models.CheckConstraint(
                condition=~Q(status__in=[UsageStatus.UPSTREAM_ERROR, UsageStatus.UPSTREAM_TIMEOUT])
                | Q(charge_nano=0, quota_tokens=0, commitment_tokens=0),
                name="usage_failures_free",
            ),
        ]

    def __str__(self) -> str:
        return f"usage {self.request_id} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RefusalCount(models.Model):
    """Calls refused for money or rate (402, 429) per UTC day, key, workflow and reason, so a customer sees why
    calls failed beside their usage. A counter, not a log: the gateway adds to it after answering, in batches
    (api.gateway.refusal_counts), with REFUSALS_UPSERT."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="refusals")
    day = models.DateField()
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="refusals"
    )
    workflow = models.CharField(max_length=100, blank=True, default="")
    status = models.PositiveSmallIntegerField()  # 402 | 429
    # The error's code: insufficient_credit, key_spend_limit_reached, rate_limit_exceeded, request_too_large, ...
    reason = models.CharField(max_length=50)
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "api_key", "workflow", "status", "reason"],
                nulls_distinct=False,
                name="refusal_count_unique",
            ),
            models.CheckConstraint(condition=Q(count__gt=0), name="refusal_count_positive"),
            models.CheckConstraint(condition=Q(status__in=[402, 429]), name="refusal_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.count} x {self.status} {self.reason} on {self.day}"
