"""Writes to the catalogue and its price versions.

A price version that has taken effect is history (usage records point at it), so it is never edited or
cancelled; only a version scheduled for the future may change. Changes for one model are serialised by
locking that model's row, so two staff members cannot schedule clashing versions at once. Every change is
recorded in the audit log, in the same transaction.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import audit_record
from billing.pricing.errors import ModelNotFound, PriceVersionLocked, PricingConflict, StaleConfirmation
from billing.pricing.models import AIModel, PriceVersion
from billing.pricing.price_book import PRICE_BOOK, SEED_EFFECTIVE_FROM
from billing.pricing.services import validation
from core.errors import ApplicationError

PRICE_FIELDS = (
    "input_price_micro_per_mtok",
    "cached_input_price_micro_per_mtok",
    "output_price_micro_per_mtok",
    "reasoning_price_micro_per_mtok",
    "request_fee_nano",
    "currency",
    "priority_factor_bps",
    "flex_factor_bps",
    "batch_factor_bps",
    "long_context_threshold_tokens",
    "long_input_price_micro_per_mtok",
    "long_cached_input_price_micro_per_mtok",
    "long_output_price_micro_per_mtok",
    "note",
)
LONG_FIELDS = (
    "long_context_threshold_tokens",
    "long_input_price_micro_per_mtok",
    "long_cached_input_price_micro_per_mtok",
    "long_output_price_micro_per_mtok",
)
MODEL_FIELDS = (
    "display_name",
    "provider",
    "group",
    "encoding",
    "kind",
    "context_window",
    "default_max_tokens",
    "max_output_tokens",
    "status",
    "sunset_at",
)


def _validate_prices(values: dict[str, Any]) -> None:
    """Every price a whole non-negative number within bounds, the cached price within the input price, the
    service-tier factors on the right side of list price, and long-context prices all given or none."""
    for field in (
        "input_price_micro_per_mtok",
        "cached_input_price_micro_per_mtok",
        "output_price_micro_per_mtok",
        "reasoning_price_micro_per_mtok",
        "long_input_price_micro_per_mtok",
        "long_cached_input_price_micro_per_mtok",
        "long_output_price_micro_per_mtok",
    ):
        if values.get(field) is not None:
            validation.price(values[field], param=field)
    if values.get("request_fee_nano") is not None:
        validation.amount(values["request_fee_nano"], param="request_fee_nano")
    if values.get("priority_factor_bps") is not None:
        validation.whole(values["priority_factor_bps"], param="priority_factor_bps", minimum=10_000, maximum=100_000)
    for field in ("flex_factor_bps", "batch_factor_bps"):
        if values.get(field) is not None:
            validation.bps(values[field], param=field)
    cached = values.get("cached_input_price_micro_per_mtok")
    if cached is not None and cached > values.get("input_price_micro_per_mtok", cached):
        raise ApplicationError(
            "The cached input price cannot exceed the input price.",
            param="cached_input_price_micro_per_mtok",
            code="invalid_value",
        )
    given = [values.get(field) is not None for field in LONG_FIELDS]
    if any(given) and not all(given):
        missing = next(field for field, present in zip(LONG_FIELDS, given, strict=True) if not present)
        raise ApplicationError(
            "Long-context pricing needs a threshold and all three long prices (input, cached input, output).",
            param=missing,
            code="invalid_value",
        )
    if all(given):
        validation.tokens(values["long_context_threshold_tokens"], param="long_context_threshold_tokens", minimum=1)
        if values["long_cached_input_price_micro_per_mtok"] > values["long_input_price_micro_per_mtok"]:
            raise ApplicationError(
                "The long-context cached input price cannot exceed the long-context input price.",
                param="long_cached_input_price_micro_per_mtok",
                code="invalid_value",
            )
    if values.get("currency") is not None and (
        not isinstance(values["currency"], str) or len(values["currency"]) != 3 or not values["currency"].isalpha()
    ):
        raise ApplicationError("currency must be a three-letter code.", param="currency", code="invalid_value")
    if values.get("note") is not None:
        validation.text(values["note"], param="note", max_length=500)


def _locked_model(model_slug: str) -> AIModel:
    model = AIModel.objects.select_for_update().filter(slug=model_slug).first()
    if model is None:
        raise ModelNotFound(f"The model '{model_slug}' does not exist.", param="model")
    return model


def _full_clean(instance: Any, **options: Any) -> None:
    """Model validation as a 400 naming the first offending field."""
    try:
        instance.full_clean(**options)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        param = None if field == "__all__" else field
        raise ApplicationError(f"{field}: {' '.join(messages)}", param=param, code="invalid_value") from exc


def _version_detail(version: PriceVersion) -> dict[str, Any]:
    detail: dict[str, Any] = {field: getattr(version, field) for field in PRICE_FIELDS}
    detail["model"] = version.model.slug
    detail["effective_from"] = version.effective_from.isoformat()
    return detail


def _prices_snapshot(version: PriceVersion | None) -> dict[str, Any] | None:
    """A version's prices and start for an audit entry's before / after (the note is the entry's reason)."""
    if version is None:
        return None
    return {
        "price_version_id": version.pk,
        **{field: getattr(version, field) for field in PRICE_FIELDS if field != "note"},
        "effective_from": version.effective_from,
    }


def _model_label(model: AIModel) -> str:
    return f"{model.display_name} ({model.slug})" if model.display_name else model.slug


def _version_label(model: AIModel, version: PriceVersion) -> str:
    return f"{_model_label(model)}: price version #{version.pk}"


def _model_snapshot(model: AIModel) -> dict[str, Any]:
    return {field: getattr(model, field) for field in MODEL_FIELDS}


def _model_audit(
    model: AIModel, action: str, *, actor: Any, fields: dict[str, Any], before: dict[str, Any] | None
) -> None:
    """An audit entry of `model`: the fields as given, and the model before and after."""
    audit_record(
        actor=actor,
        action=action,
        target=f"AIModel:{model.slug}",
        target_label=_model_label(model),
        model_slug=model.slug,
        detail={k: str(v) for k, v in fields.items() if k in MODEL_FIELDS},
        before=before,
        after=_model_snapshot(model),
    )


@transaction.atomic
def model_create(*, slug: str, actor: Any = None, **fields: Any) -> AIModel:
    validation.text(slug, param="slug", max_length=200, required=True)
    if AIModel.objects.filter(slug=slug).exists():
        raise PricingConflict(f"A model with id '{slug}' already exists.", param="slug")
    model = AIModel(slug=slug, **{k: v for k, v in fields.items() if k in MODEL_FIELDS})
    _full_clean(model)
    model.save()
    _model_audit(model, "pricing.model.create", actor=actor, fields=fields, before=None)
    return model


@transaction.atomic
def model_update(*, model_slug: str, actor: Any = None, **fields: Any) -> AIModel:
    model = _locked_model(model_slug)
    before = _model_snapshot(model)
    for key, value in fields.items():
        if key in MODEL_FIELDS:
            setattr(model, key, value)
    _full_clean(model)
    model.save()
    _model_audit(model, "pricing.model.update", actor=actor, fields=fields, before=before)
    return model


@dataclass(frozen=True)
class PriceVersionReview:
    """What publishing a price version would do, checked but not written (the console's confirmation page)."""

    model: AIModel
    values: dict[str, Any]
    # When the new prices start; `starts_now` when no start was given (publishing takes the moment of publishing).
    effective_from: datetime
    starts_now: bool
    # The version in effect at that start, which the new one supersedes (None for a model's first price) ...
    replaces: PriceVersion | None
    # ... and the version already scheduled after that start, which will in turn supersede the new one.
    followed_by: PriceVersion | None


def _version_values(
    *,
    input_price_micro_per_mtok: int,
    cached_input_price_micro_per_mtok: int | None,
    output_price_micro_per_mtok: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "input_price_micro_per_mtok": input_price_micro_per_mtok,
        "cached_input_price_micro_per_mtok": (
            input_price_micro_per_mtok
            if cached_input_price_micro_per_mtok is None
            else cached_input_price_micro_per_mtok
        ),
        "output_price_micro_per_mtok": output_price_micro_per_mtok,
        **{k: v for k, v in options.items() if k in PRICE_FIELDS},
    }
    for required in ("input_price_micro_per_mtok", "output_price_micro_per_mtok"):
        if values[required] is None:
            raise ApplicationError(f"{required} is required.", param=required, code="invalid_value")
    _validate_prices(values)
    return values


def _version_check(*, model: AIModel, effective_from: datetime, now: datetime) -> PriceVersionReview:
    """The start-time rules of a new version of `model`, and the versions around it. Reads only."""
    live = PriceVersion.objects.filter(model=model, cancelled_at__isnull=True)
    if effective_from < now and live.exists():
        raise PricingConflict(
            f"effective_from {effective_from:%Y-%m-%d %H:%M} UTC is in the past; a new price can take effect "
            "now or later, never retroactively.",
            param="effective_from",
        )
    if live.filter(effective_from=effective_from).exists():
        raise PricingConflict(
            f"'{model.slug}' already has a price version starting at {effective_from.isoformat()}.",
            param="effective_from",
        )
    return PriceVersionReview(
        model=model,
        values={},
        effective_from=effective_from,
        starts_now=False,
        replaces=live.filter(effective_from__lte=effective_from).order_by("-effective_from").first(),
        followed_by=live.filter(effective_from__gt=effective_from).order_by("effective_from").first(),
    )


def price_version_review(
    *,
    model_slug: str,
    input_price_micro_per_mtok: int,
    cached_input_price_micro_per_mtok: int | None = None,
    output_price_micro_per_mtok: int,
    effective_from: datetime | None = None,
    now: datetime | None = None,
    **options: Any,
) -> PriceVersionReview:
    """Check a price version as `price_version_create` would, without writing: the same errors, and what it
    would replace. The confirmation step shows this and hands `replaces` back to `price_version_create`."""
    now = now or timezone.now()
    start = validation.moment(effective_from or now, param="effective_from")
    model = AIModel.objects.filter(slug=model_slug).first()
    if model is None:
        raise ModelNotFound(f"The model '{model_slug}' does not exist.", param="model")
    values = _version_values(
        input_price_micro_per_mtok=input_price_micro_per_mtok,
        cached_input_price_micro_per_mtok=cached_input_price_micro_per_mtok,
        output_price_micro_per_mtok=output_price_micro_per_mtok,
        options=options,
    )
    review = _version_check(model=model, effective_from=start, now=now)
    return PriceVersionReview(
        model=model,
        values=values,
        effective_from=start,
        starts_now=effective_from is None,
        replaces=review.replaces,
        followed_by=review.followed_by,
    )


# `confirmed_replaces_id` for a confirmation that showed the model without any price.
REPLACES_NOTHING = 0


@transaction.atomic
def price_version_create(
    *,
    model_slug: str,
    input_price_micro_per_mtok: int,
    cached_input_price_micro_per_mtok: int | None = None,
    output_price_micro_per_mtok: int,
    effective_from: datetime | None = None,
    actor: Any = None,
    now: datetime | None = None,
    confirmed_replaces_id: int | None = None,
    **options: Any,
) -> PriceVersion:
    """Publish (effective now) or schedule (effective later) a price version.

    `effective_from` may not lie in the past once the model has a price: that would change what earlier
    usage should have cost. A model's first version may start at any time (nothing was rated before it).
    `cached_input_price_micro_per_mtok` defaults to the input price (no caching discount).
    `confirmed_replaces_id` is the version a person was shown as the one being replaced (REPLACES_NOTHING: none);
    if another version is in effect at the start by now, the confirmation is stale and PricingConflict is raised.
    The version's note is the audit entry's reason; its before / after are the replaced and the new prices.
    """
    now = now or timezone.now()
    effective_from = validation.moment(effective_from or now, param="effective_from")
    model = _locked_model(model_slug)
    values = _version_values(
        input_price_micro_per_mtok=input_price_micro_per_mtok,
        cached_input_price_micro_per_mtok=cached_input_price_micro_per_mtok,
        output_price_micro_per_mtok=output_price_micro_per_mtok,
        options=options,
    )
    # Under the model's lock, so no other change to its versions can slip in between this check and the insert.
    review = _version_check(model=model, effective_from=effective_from, now=now)
    replaces = review.replaces
    if confirmed_replaces_id is not None and confirmed_replaces_id != (replaces.pk if replaces else REPLACES_NOTHING):
        raise StaleConfirmation(
            f"The prices of '{model_slug}' changed since this was confirmed (now "
            + (f"price version #{replaces.pk}" if replaces else "no price")
            + " is in effect at that start). Nothing was published; review the change again.",
            param="confirmed_replaces_id",
        )
    version = PriceVersion(model=model, effective_from=effective_from, created_by=_user(actor), **values)
    _full_clean(version, validate_constraints=False)
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError as exc:  # a constraint the checks above did not foresee
        raise PricingConflict(f"The price version was rejected: {exc}") from exc
    audit_record(
        actor=actor,
        action="pricing.price_version.create",
        target=f"PriceVersion:{version.pk}",
        target_label=_version_label(model, version),
        model_slug=model.slug,
        reason=version.note,
        detail=_version_detail(version),
        before=_prices_snapshot(replaces),
        after=_prices_snapshot(version),
    )
    return version


def _user(actor: Any) -> Any:
    """The actor as a user for created_by columns (None for the system or a named process)."""
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None


def _locked_future_version(version_id: int, now: datetime) -> PriceVersion:
    version = (
        PriceVersion.objects.select_for_update()
        .select_related("model")
        .filter(pk=version_id, cancelled_at__isnull=True)
        .first()
    )
    if version is None:
        raise ModelNotFound(f"No scheduled price version {version_id}.", param="price_version", code="not_found")
    if version.effective_from <= now:
        raise PriceVersionLocked(
            f"Price version {version_id} took effect at {version.effective_from.isoformat()} and can no longer "
            "change; schedule a new version instead."
        )
    return version


@transaction.atomic
def price_version_update(
    *,
    price_version_id: int,
    now: datetime | None = None,
    effective_from: datetime | None = None,
    actor: Any = None,
    **fields: Any,
) -> PriceVersion:
    """Edit a version scheduled for the future; one that has taken effect raises PriceVersionLocked."""
    now = now or timezone.now()
    version = _locked_future_version(price_version_id, now)
    # Lock the model as price_version_create does, so a concurrent create cannot take the same start.
    _locked_model(version.model.slug)
    before = _prices_snapshot(version)
    values = {k: v for k, v in fields.items() if k in PRICE_FIELDS}
    merged = {f: getattr(version, f) for f in PRICE_FIELDS} | values
    _validate_prices(merged)
    if effective_from is not None:
        validation.moment(effective_from, param="effective_from")
        if effective_from <= now:
            raise PricingConflict("A scheduled version can only be moved to a later time.", param="effective_from")
        clash = PriceVersion.objects.filter(
            model_id=version.model_id, effective_from=effective_from, cancelled_at__isnull=True
        ).exclude(pk=version.pk)
        if clash.exists():
            raise PricingConflict("Another version of this model starts at that time.", param="effective_from")
        version.effective_from = effective_from
    for key, value in values.items():
        setattr(version, key, value)
    version.save()
    audit_record(
        actor=actor,
        action="pricing.price_version.update",
        target=f"PriceVersion:{version.pk}",
        target_label=_version_label(version.model, version),
        model_slug=version.model.slug,
        reason=values.get("note") or "",
        detail=_version_detail(version),
        before=before,
        after=_prices_snapshot(version),
    )
    return version


@transaction.atomic
def price_version_cancel(
    *, price_version_id: int, actor: Any = None, now: datetime | None = None, reason: str = ""
) -> PriceVersion:
    """Cancel a scheduled version before it takes effect (it is kept, marked cancelled, and never used)."""
    now = now or timezone.now()
    version = _locked_future_version(price_version_id, now)
    version.cancelled_at = now
    version.cancelled_by = _user(actor)
    version.save(update_fields=["cancelled_at", "cancelled_by"])
    audit_record(
        actor=actor,
        action="pricing.price_version.cancel",
        target=f"PriceVersion:{version.pk}",
        target_label=_version_label(version.model, version),
        model_slug=version.model.slug,
        reason=reason,
        detail=_version_detail(version),
        before={"status": "scheduled", "effective_from": version.effective_from},
        after={"status": "cancelled", "effective_from": version.effective_from, "cancelled_at": now},
    )
    return version


@transaction.atomic
def price_book_seed() -> list[AIModel]:
    """Create the default price book (price_book.PRICE_BOOK) if missing. Idempotent; never overwrites.

    A model that exists keeps whatever staff made of it; a model without any price version gets the book's
    prices from SEED_EFFECTIVE_FROM.
    """
    seeded = []
    for entry in PRICE_BOOK:
        model, _ = AIModel.objects.get_or_create(
            slug=entry["slug"], defaults={k: entry[k] for k in MODEL_FIELDS if k in entry}
        )
        if not PriceVersion.objects.filter(model=model).exists():
            PriceVersion.objects.create(
                model=model,
                input_price_micro_per_mtok=entry["input_price_micro_per_mtok"],
                cached_input_price_micro_per_mtok=entry["cached_input_price_micro_per_mtok"],
                output_price_micro_per_mtok=entry["output_price_micro_per_mtok"],
                effective_from=SEED_EFFECTIVE_FROM,
                note=f"default price book: {entry['source']}",
            )
        seeded.append(model)
    return seeded
