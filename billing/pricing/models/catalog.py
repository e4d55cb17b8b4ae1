"""The model catalogue and effective-dated price versions.

Prices are integer micro-units of the currency per million tokens. One micro-unit per million tokens is one
pico-unit per token, so `price_micro_per_mtok` is also the price of a single token in pico-units.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Encoding(models.TextChoices):
    CL100K_BASE = "cl100k_base", "cl100k_base"
    O200K_BASE = "o200k_base", "o200k_base"


class ModelKind(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"


class ModelStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"


class AIModel(models.Model):
    """A model clients can call, by the id they send (`slug`)."""

    slug = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200)
    provider = models.CharField(max_length=100, blank=True)
    # Tiers, plan quotas and commitments can apply to a group of models (e.g. "open-weight") as one volume.
    group = models.CharField(max_length=100, blank=True)
    encoding = models.CharField(max_length=20, choices=Encoding.choices)
    kind = models.CharField(max_length=20, choices=ModelKind.choices, default=ModelKind.CHAT)
    context_window = models.PositiveIntegerField()
    default_max_tokens = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=ModelStatus.choices, default=ModelStatus.ACTIVE)
    sunset_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=~Q(slug=""), name="aimodel_slug_not_empty"),
            models.CheckConstraint(condition=Q(encoding__in=Encoding.values), name="aimodel_encoding_valid"),
            models.CheckConstraint(condition=Q(kind__in=ModelKind.values), name="aimodel_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=ModelStatus.values), name="aimodel_status_valid"),
            models.CheckConstraint(condition=Q(context_window__gt=0), name="aimodel_context_window_positive"),
            models.CheckConstraint(
                condition=Q(default_max_tokens__lte=F("max_output_tokens")), name="aimodel_default_le_max_output"
            ),
            models.CheckConstraint(
                condition=Q(max_output_tokens__lte=F("context_window")), name="aimodel_max_output_le_context"
            ),
            # A deprecated model always says when it goes away.
            models.CheckConstraint(
                condition=Q(status=ModelStatus.ACTIVE) | Q(sunset_at__isnull=False),
                name="aimodel_deprecated_has_sunset",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class PriceVersion(models.Model):
    """The prices of one model from `effective_from` until the next version of that model takes effect.

    A version that has taken effect is history: usage rated with it points at it, so it is never edited (the
    services refuse; a database trigger refuses any change to a version a usage record points at). A future
    version may be edited or cancelled until it takes effect; a cancelled one is kept (with who cancelled it)
    but never used.
    """

    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="price_versions")
    input_price_micro_per_mtok = models.BigIntegerField()
    cached_input_price_micro_per_mtok = models.BigIntegerField()
    output_price_micro_per_mtok = models.BigIntegerField()
    # Reasoning tokens (reported by the model server as part of the completion tokens); null: the output price.
    reasoning_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    request_fee_nano = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, default="USD")
    # Service tiers chosen per request, as factors of the list price in basis points (10_000 = list price).
    priority_factor_bps = models.PositiveIntegerField(default=17_000)
    flex_factor_bps = models.PositiveIntegerField(default=5_000)
    batch_factor_bps = models.PositiveIntegerField(default=5_000)
    # Long context (optional): a request whose prompt has more tokens than the threshold is priced, in full, at
    # the long prices. All four are set, or none.
    long_context_threshold_tokens = models.PositiveIntegerField(null=True, blank=True)
    long_input_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    long_cached_input_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    long_output_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    effective_from = models.DateTimeField()
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["model_id", "effective_from"]
        indexes = [models.Index(fields=["model", "effective_from"], name="priceversion_model_from")]
        constraints = [
            models.CheckConstraint(condition=Q(input_price_micro_per_mtok__gte=0), name="pv_input_nonneg"),
            models.CheckConstraint(condition=Q(cached_input_price_micro_per_mtok__gte=0), name="pv_cached_nonneg"),
            models.CheckConstraint(condition=Q(output_price_micro_per_mtok__gte=0), name="pv_output_nonneg"),
            models.CheckConstraint(condition=Q(request_fee_nano__gte=0), name="pv_request_fee_nonneg"),
            models.CheckConstraint(
                condition=Q(reasoning_price_micro_per_mtok__isnull=True) | Q(reasoning_price_micro_per_mtok__gte=0),
                name="pv_reasoning_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(cached_input_price_micro_per_mtok__lte=F("input_price_micro_per_mtok")),
                name="pv_cached_le_input",
            ),
            models.CheckConstraint(condition=Q(priority_factor_bps__gte=10_000), name="pv_priority_not_discount"),
            models.CheckConstraint(condition=Q(flex_factor_bps__lte=10_000), name="pv_flex_is_discount"),
            models.CheckConstraint(condition=Q(batch_factor_bps__lte=10_000), name="pv_batch_is_discount"),
            models.CheckConstraint(
                condition=Q(
                    long_context_threshold_tokens__isnull=True,
                    long_input_price_micro_per_mtok__isnull=True,
                    long_cached_input_price_micro_per_mtok__isnull=True,
                    long_output_price_micro_per_mtok__isnull=True,
                )
                | Q(
                    long_context_threshold_tokens__gt=0,
                    long_input_price_micro_per_mtok__gte=0,
                    long_cached_input_price_micro_per_mtok__gte=0,
                    long_cached_input_price_micro_per_mtok__lte=F("long_input_price_micro_per_mtok"),
                    long_output_price_micro_per_mtok__gte=0,
                ),
                name="pv_long_context_complete",
            ),
            # Versions of one model never start at the same instant: each one runs until the next begins.
            models.UniqueConstraint(
                fields=["model", "effective_from"],
                condition=Q(cancelled_at__isnull=True),
                name="pv_unique_model_effective_from",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} from {self.effective_from:%Y-%m-%d %H:%M}"
