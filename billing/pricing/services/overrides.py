"""Per-organization negotiated prices. Each is set with a reason, by a person, and recorded in the audit log.

Overrides of one organization on one scope never overlap in time (checked under a lock on the organization's
row, the one lock path for its overrides). An override is ended, never deleted: history keeps what applied.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from billing.pricing.errors import PricingConflict, PricingNotFound
from billing.pricing.models import PriceOverride
from billing.pricing.services import validation
from billing.pricing.services.catalog import _full_clean, _user
from billing.pricing.services.scope import scope_resolve
from core.errors import ApplicationError

PRICE_FIELDS = ("input_price_micro_per_mtok", "cached_input_price_micro_per_mtok", "output_price_micro_per_mtok")


def _detail(override: PriceOverride) -> dict[str, Any]:
    return {
        "scope": override.scope_key,
        "discount_bps": override.discount_bps,
        **{f: getattr(override, f) for f in PRICE_FIELDS},
        "effective_from": override.effective_from.isoformat(),
        "effective_until": override.effective_until.isoformat() if override.effective_until else None,
    }


def _snapshot(override: PriceOverride) -> dict[str, Any]:
    """An override's terms for an audit entry's before / after."""
    return {
        "scope": override.scope_key,
        "discount_bps": override.discount_bps,
        **{f: getattr(override, f) for f in PRICE_FIELDS},
        "effective_from": override.effective_from,
        "effective_until": override.effective_until,
    }


def _audit(override: PriceOverride, action: str, *, actor: Any, reason: str, before: dict[str, Any] | None) -> None:
    audit_record(
        actor=actor,
        action=action,
        organization_id=override.organization_id,
        target=f"PriceOverride:{override.pk}",
        target_label=f"negotiated price #{override.pk} on {override.scope_key}",
        model_slug=override.model.slug if override.model else "",
        reason=reason,
        detail=_detail(override),
        before=before,
        after=_snapshot(override),
    )


def _locked_organization(organization_id: int) -> Organization:
    organization = Organization.objects.select_for_update().filter(pk=organization_id).first()
    if organization is None:
        raise PricingNotFound(f"No organization {organization_id}.", param="organization")
    return organization


@transaction.atomic
def override_create(
    *,
    organization_id: int,
    reason: str,
    actor: Any,
    model: str | None = None,
    group: str | None = None,
    discount_bps: int = 0,
    effective_from: datetime | None = None,
    effective_until: datetime | None = None,
    now: datetime | None = None,
    **prices: Any,
) -> PriceOverride:
    """Give an organization negotiated prices on a model (absolute prices and/or a discount) or a group
    (a discount), from `effective_from` (now; never in the past) until `effective_until` (open-ended)."""
    now = now or timezone.now()
    reason = validation.text(reason, param="reason", max_length=500, required=True)
    effective_from = validation.moment(effective_from or now, param="effective_from")
    if effective_from < now:
        raise ApplicationError(
            "effective_from is in the past; a negotiated price applies from now on, never retroactively.",
            param="effective_from",
            code="invalid_value",
        )
    if effective_until is not None and validation.moment(effective_until, param="effective_until") <= effective_from:
        raise ApplicationError(
            "effective_until must be after effective_from.", param="effective_until", code="invalid_value"
        )
    validation.bps(discount_bps, param="discount_bps")
    values = {k: prices.get(k) for k in PRICE_FIELDS}
    for field, value in values.items():
        if value is not None:
            validation.price(value, param=field)
    scope_model, scope_group = scope_resolve(model_slug=model, group=group)
    if scope_model is None and any(v is not None for v in values.values()):
        raise ApplicationError(
            "Absolute prices can only be negotiated for one model; give a group a discount_bps instead.",
            param="input_price_micro_per_mtok",
            code="invalid_value",
        )
    if not discount_bps and all(v is None for v in values.values()):
        raise ApplicationError(
            "An override needs a discount_bps or at least one price.", param="discount_bps", code="invalid_value"
        )
    _locked_organization(organization_id)
    clash = PriceOverride.objects.filter(organization_id=organization_id, model=scope_model, group=scope_group).filter(
        Q(effective_until__isnull=True) | Q(effective_until__gt=effective_from)
    )
    if effective_until is not None:
        clash = clash.filter(effective_from__lt=effective_until)
    if clash.exists():
        raise PricingConflict(
            "The organization already has a negotiated price on this scope for part of that time; end it first.",
            param="effective_from",
        )
    override = PriceOverride(
        organization_id=organization_id,
        model=scope_model,
        group=scope_group,
        discount_bps=discount_bps,
        effective_from=effective_from,
        effective_until=effective_until,
        reason=reason,
        created_by=_user(actor),
        **values,
    )
    _full_clean(override)
    override.save()
    _audit(override, "pricing.override.create", actor=actor, reason=reason, before=None)
    return override


@transaction.atomic
def override_end(
    *, override_id: int, reason: str, actor: Any, at: datetime | None = None, now: datetime | None = None
) -> PriceOverride:
    """End an override at `at` (now; never in the past: what was charged under it stays as charged)."""
    now = now or timezone.now()
    at = validation.moment(at or now, param="at")
    reason = validation.text(reason, param="reason", max_length=500, required=True)
    organization_id = PriceOverride.objects.filter(pk=override_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        raise PricingNotFound(f"No override {override_id}.", param="override")
    _locked_organization(organization_id)
    override = PriceOverride.objects.select_related("model").get(pk=override_id)
    if at < now:
        raise ApplicationError("An override cannot be ended in the past.", param="at", code="invalid_value")
    if override.effective_until is not None and override.effective_until <= now:
        raise PricingConflict(f"Override {override_id} has already ended.", param="override")
    if at <= override.effective_from:
        raise ApplicationError(
            "That is not after the override starts; it would never apply (give a later time).",
            param="at",
            code="invalid_value",
        )
    before = _snapshot(override)
    override.effective_until = at
    override.ended_by = _user(actor)
    override.save(update_fields=["effective_until", "ended_by"])
    _audit(override, "pricing.override.end", actor=actor, reason=reason, before=before)
    return override
