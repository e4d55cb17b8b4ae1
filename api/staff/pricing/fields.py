"""Fields for amounts and prices in request and response bodies.

Amounts are decimal strings in the currency's main unit ("12.50"), prices decimal strings per million tokens
("2.50" = 2,500,000 micro-units per million tokens); responses carry the exact integers (`*_nano`,
`*_micro_per_mtok`) beside them. Floats are refused: "0.1" is exact, 0.1 is not.
"""

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.pricing.units import PriceError, price_format, price_parse
from core.money import AmountError, format_amount, parse_amount

WHOLE_TEXT = re.compile(r"[+-]?[0-9]+")


@extend_schema_field(OpenApiTypes.STR)
class AmountField(serializers.Field):
    """ "12.50" <-> nano-units."""

    default_error_messages = {"invalid": '{message}. Write amounts as decimal strings, e.g. "12.50".'}

    def __init__(self, *, allow_zero: bool = True, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid", message="an amount must be a string")
        try:
            return parse_amount(data, allow_zero=self.allow_zero)
        except AmountError as exc:
            self.fail("invalid", message=str(exc).rstrip("."))
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: int) -> str:
        return format_amount(value)


class WholeNumberField(serializers.IntegerField):
    """A whole number: a JSON integer, or text of the ASCII digits 0-9. DRF's IntegerField reads Arabic-Indic or
    full-width digits as numbers too (Python's int() accepts any script's digits); an id or a count typed that
    way is a mistake."""

    default_error_messages = {"not_ascii": "A whole number written with the digits 0-9."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and not WHOLE_TEXT.fullmatch(data.strip()):
            self.fail("not_ascii")
        return super().to_internal_value(data)  # type: ignore[no-any-return]


@extend_schema_field(OpenApiTypes.STR)
class PriceField(serializers.Field):
    """ "2.50" (per million tokens) <-> micro-units per million tokens."""

    default_error_messages = {"invalid": '{message}. Write prices per million tokens as decimal strings, e.g. "2.50".'}

    def to_internal_value(self, data: Any) -> int:
        try:
            return price_parse(data)
        except PriceError as exc:
            self.fail("invalid", message=str(exc))
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: int) -> str:
        return price_format(value)
