"""Per-organization negotiated prices: a discount on the list price of a model or group, or (for one model)
absolute prices, over a time range, with who set it and why (also in the audit log)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.pricing.models.scope import ScopedMixin, one_scope


class PriceOverride(ScopedMixin):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="price_overrides")
    # Discount on every price of the version in effect (basis points); ignored for kinds given absolutely below.
    discount_bps = models.PositiveIntegerField(default=0)
    input_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    cached_input_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    output_price_micro_per_mtok = models.BigIntegerField(null=True, blank=True)
    effective_from = models.DateTimeField()
    effective_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            one_scope("priceoverride"),
            models.CheckConstraint(condition=Q(discount_bps__lte=10_000), name="priceoverride_discount_le_100pct"),
            models.CheckConstraint(
                condition=Q(input_price_micro_per_mtok__isnull=True) | Q(input_price_micro_per_mtok__gte=0),
                name="priceoverride_input_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(cached_input_price_micro_per_mtok__isnull=True)
                | Q(cached_input_price_micro_per_mtok__gte=0),
                name="priceoverride_cached_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(output_price_micro_per_mtok__isnull=True) | Q(output_price_micro_per_mtok__gte=0),
                name="priceoverride_output_nonneg",
            ),
            # Absolute prices only make sense for one model.
            models.CheckConstraint(
                condition=Q(model__isnull=False)
                | Q(
                    input_price_micro_per_mtok__isnull=True,
                    cached_input_price_micro_per_mtok__isnull=True,
                    output_price_micro_per_mtok__isnull=True,
                ),
                name="priceoverride_absolute_needs_model",
            ),
            # An override changes something.
            models.CheckConstraint(
                condition=Q(discount_bps__gt=0)
                | Q(input_price_micro_per_mtok__isnull=False)
                | Q(cached_input_price_micro_per_mtok__isnull=False)
                | Q(output_price_micro_per_mtok__isnull=False),
                name="priceoverride_not_empty",
            ),
            models.CheckConstraint(
                condition=Q(effective_until__isnull=True) | Q(effective_until__gt=F("effective_from")),
                name="priceoverride_range_order",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="priceoverride_reason_required"),
        ]

    def __str__(self) -> str:
        return f"override {self.pk} for organization {self.organization_id} on {self.scope_label}"
