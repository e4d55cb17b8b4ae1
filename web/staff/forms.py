"""Forms of the staff pricing console. They only parse what a person typed; the services decide."""

import re
from typing import Any

from django import forms

from accounts.models import AuditEvent, Organization
from billing.pricing.models import AIModel, PlanInterval
from billing.pricing.rating import SERVICE_TIERS
from billing.pricing.services import AllowanceSpec
from billing.pricing.units import PriceError, price_parse
from core.money import AmountError, parse_amount

MAX_TOKENS = 10**14
# Whole numbers are ASCII digits: str.isdigit() also passes superscripts, which int() refuses, and int() reads
# Arabic-Indic and full-width digits.
WHOLE_TEXT = re.compile(r"[0-9]+")


class PriceInput(forms.CharField):
    """A price per million tokens, "2.50", cleaned to micro-units per million tokens."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("help_text", "per million tokens, e.g. 2.50")
        super().__init__(max_length=40, **kwargs)

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().clean(value)
        if text in (None, ""):
            return None
        try:
            return price_parse(text)
        except PriceError as exc:
            raise forms.ValidationError(f"{exc}.") from exc


class AmountInput(forms.CharField):
    """An amount in the currency's main unit, "12.50", cleaned to nano-units."""

    def __init__(self, **kwargs: Any):
        super().__init__(max_length=40, **kwargs)

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().clean(value)
        if text in (None, ""):
            return None
        try:
            return parse_amount(text, allow_zero=True)
        except AmountError as exc:
            raise forms.ValidationError(f"{exc}.") from exc


class WholeNumberInput(forms.IntegerField):
    """A whole number typed with the digits 0-9 (Django's IntegerField, like int(), reads Arabic-Indic or
    full-width digits too)."""

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str) and value.strip() and not WHOLE_TEXT.fullmatch(value.strip()):
            raise forms.ValidationError("Enter a whole number with the digits 0-9.", code="invalid")
        return super().to_python(value)


class WhenInput(forms.DateTimeField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("help_text", "UTC, e.g. 2026-05-01 00:00")
        super().__init__(**kwargs)


def _models() -> list[tuple[str, str]]:
    return [(m.slug, m.slug) for m in AIModel.objects.order_by("slug")]


def organization_choices() -> list[tuple[Any, str]]:
    return [(o.pk, f"{o.name} (#{o.pk})") for o in Organization.objects.order_by("name")[:500]]


def _groups() -> list[tuple[str, str]]:
    groups = sorted({g for g in AIModel.objects.values_list("group", flat=True) if g})
    return [("", "—"), *[(g, g) for g in groups]]


class ConsoleForm(forms.Form):
    def _choices(self, name: str, choices: list[tuple[Any, str]]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices


class ScopeForm(ConsoleForm):
    model = forms.ChoiceField(required=False)
    group = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choices("model", [("", "—"), *_models()])
        self._choices("group", _groups())


START_CHOICES = [("now", "Now (when you confirm)"), ("at", "At a later date and time (UTC)")]


class PriceVersionForm(forms.Form):
    """Step one of publishing a price: the prices, when they start, and why. Nothing is written from it."""

    input_price = PriceInput()
    cached_input_price = PriceInput(required=False, help_text="per million tokens; empty: the input price")
    output_price = PriceInput()
    reasoning_price = PriceInput(required=False, help_text="per million tokens; empty: the output price")
    start = forms.ChoiceField(
        choices=START_CHOICES, required=False, widget=forms.RadioSelect, label="Effective from", initial="now"
    )
    effective_from = WhenInput(
        required=False, label="Start (UTC)", help_text="for a later start: UTC, e.g. 2026-05-01 00:00"
    )
    note = forms.CharField(
        required=False, max_length=500, label="Why (note)", help_text="kept with the version and in the audit log"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # A form without the choice (an older page, a script) means "at" when it names a time.
        start = data.get("start") or ("at" if data.get("effective_from") else "now")
        if start == "at" and data.get("effective_from") is None and "effective_from" not in self.errors:
            self.add_error("effective_from", "Give the start date and time in UTC, or choose Now.")
        if start == "now" and data.get("effective_from") is not None:
            # Typed a time but left "Now" chosen: ask rather than guess which was meant.
            self.add_error(
                "effective_from", "You chose Now and gave a start time: choose the later start, or clear it."
            )
        if start == "now":
            data["effective_from"] = None
        data["start"] = start
        return data


class PublishForm(PriceVersionForm):
    """Step two: the reviewed values sent back from the confirmation page, with the version they replace."""

    # The price version the confirmation page showed as the one replaced; 0 when the model had no price.
    confirmed_replaces = WholeNumberInput(min_value=0, max_value=2**63 - 1, widget=forms.HiddenInput)


class PreviewForm(ConsoleForm):
    organization = forms.TypedChoiceField(coerce=int)
    model = forms.ChoiceField()
    input_tokens = WholeNumberInput(min_value=0, max_value=MAX_TOKENS, initial=1_000_000)
    cached_input_tokens = WholeNumberInput(min_value=0, max_value=MAX_TOKENS, initial=0)
    output_tokens = WholeNumberInput(min_value=0, max_value=MAX_TOKENS, initial=100_000)
    service_tier = forms.ChoiceField(choices=[(t, t) for t in SERVICE_TIERS])
    draft_input_price = PriceInput(required=False, label="Draft input price")
    draft_cached_input_price = PriceInput(required=False, label="Draft cached input price")
    draft_output_price = PriceInput(required=False, label="Draft output price")
    price_version = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Or a scheduled version")

    def __init__(self, *args: Any, scheduled: list[tuple[int, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choices("organization", organization_choices())
        self._choices("model", _models())
        self._choices("price_version", [("", "—"), *(scheduled or [])])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("cached_input_tokens") or 0) > (data.get("input_tokens") or 0):
            raise forms.ValidationError("Cached input tokens are part of the input tokens.")
        return data


def allowances_parse(text: str) -> list[AllowanceSpec]:
    """One allowance a line: "model:gpt-4o 1000000 500000" or "group:open-weight 5000000" (rollover cap optional)."""
    allowances = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3) or ":" not in parts[0]:
            raise forms.ValidationError(f"Line {number}: write 'model:<id> <tokens> [rollover cap]'.")
        kind, _, name = parts[0].partition(":")
        if kind not in ("model", "group") or not name:
            raise forms.ValidationError(f"Line {number}: the scope is model:<id> or group:<name>.")
        numbers = parts[1:]
        if not all(WHOLE_TEXT.fullmatch(n) and len(n) <= 15 for n in numbers):
            raise forms.ValidationError(f"Line {number}: token counts are whole numbers.")
        allowances.append(
            AllowanceSpec(
                included_tokens=int(numbers[0]),
                rollover_cap_tokens=int(numbers[1]) if len(numbers) > 1 else 0,
                model=name if kind == "model" else None,
                group=name if kind == "group" else None,
            )
        )
    return allowances


class PlanForm(forms.Form):
    slug = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200)
    interval = forms.ChoiceField(choices=PlanInterval.choices)
    fee = AmountInput(help_text="per period, e.g. 20.00")
    included_credit = AmountInput(required=False)
    usage_discount_bps = WholeNumberInput(min_value=0, max_value=10_000, initial=0, label="Discount beyond (bps)")
    requests_per_minute = WholeNumberInput(min_value=1, max_value=2**31 - 1, required=False)
    tokens_per_minute = WholeNumberInput(min_value=1, max_value=2**31 - 1, required=False)
    allowances = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One a line: model:gpt-4o 1000000 500000 (included tokens, rollover cap)",
    )

    def clean_allowances(self) -> list[AllowanceSpec]:
        return allowances_parse(self.cleaned_data.get("allowances") or "")


class OfferForm(ScopeForm):
    name = forms.CharField(max_length=200)
    committed_tokens_per_month = WholeNumberInput(min_value=1, max_value=MAX_TOKENS, required=False)
    reserved_tokens_per_minute = WholeNumberInput(min_value=1, max_value=MAX_TOKENS // 43_200, required=False)
    term_months = forms.TypedChoiceField(coerce=int, choices=[(1, "1"), (3, "3"), (12, "12")])
    discount_bps = WholeNumberInput(min_value=0, max_value=9_999)
    payment = forms.ChoiceField(choices=[("upfront", "All upfront"), ("monthly", "Monthly")])
    blended_price = PriceInput(help_text="on-demand price of a committed token, per million")


class OverrideForm(ScopeForm):
    organization = forms.TypedChoiceField(coerce=int)
    discount_bps = WholeNumberInput(min_value=0, max_value=10_000, initial=0)
    input_price = PriceInput(required=False)
    cached_input_price = PriceInput(required=False)
    output_price = PriceInput(required=False)
    effective_until = WhenInput(required=False, help_text="UTC; empty: open-ended")
    reason = forms.CharField(max_length=500)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choices("organization", organization_choices())


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)


def _actors() -> list[tuple[str, str]]:
    labels = AuditEvent.objects.filter(action__startswith="pricing.").values_list("actor_label", flat=True)
    return [(label, label) for label in labels.distinct().order_by("actor_label")[:500]]


class AuditFilterForm(ConsoleForm):
    """Filters of the audit log page; every one optional."""

    organization = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    model = forms.ChoiceField(required=False)
    actor = forms.ChoiceField(required=False, label="Who")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choices("organization", [("", "Any"), *organization_choices()])
        self._choices("model", [("", "Any"), *_models()])
        self._choices("actor", [("", "Anyone"), *_actors()])
