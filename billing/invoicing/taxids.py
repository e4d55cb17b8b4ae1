"""Tax IDs: the types a customer can give (Stripe's names for them), each checked by format with python-stdnum and
written in the form Stripe's customer tax ID API expects. A format check only: whether the number is registered
is for Stripe (or a tax authority) to verify."""

from collections.abc import Callable
from dataclasses import dataclass

from stdnum.au import abn
from stdnum.ca import bn
from stdnum.ch import vat as ch_vat
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError
from stdnum.gb import vat as gb_vat
from stdnum.in_ import gstin
from stdnum.no import mva
from stdnum.nz import ird
from stdnum.us import ein

from core.errors import ApplicationError


@dataclass(frozen=True)
class TaxIdType:
    label: str
    example: str
    # The number typed (spaces, dots, dashes allowed) -> the number in Stripe's form; raises stdnum's ValidationError.
    clean: Callable[[str], str]


TAX_ID_TYPES: dict[str, TaxIdType] = {
    "eu_vat": TaxIdType("EU VAT number", "DE123456789", eu_vat.validate),
    "gb_vat": TaxIdType("UK VAT number", "GB123456789", lambda n: "GB" + gb_vat.validate(n)),
    "ch_vat": TaxIdType("Swiss VAT number", "CHE-123.456.789 MWST", lambda n: ch_vat.format(ch_vat.validate(n))),
    "no_vat": TaxIdType("Norwegian VAT number", "123456789MVA", lambda n: mva.validate(n).removesuffix("MVA") + "MVA"),
    "us_ein": TaxIdType("US EIN", "12-3456789", lambda n: ein.format(ein.validate(n))),
    "ca_bn": TaxIdType("Canadian BN", "123456789", bn.validate),
    "au_abn": TaxIdType("Australian ABN", "12345678912", abn.validate),
    "nz_gst": TaxIdType("New Zealand GST number", "123456789", ird.validate),
    "in_gst": TaxIdType("Indian GSTIN", "12ABCDE3456FGZH", gstin.validate),
}


def tax_id_clean(*, tax_id_type: str, value: str) -> str:
    """The tax ID in Stripe's form, or an ApplicationError that says what is wrong with it."""
    kind = TAX_ID_TYPES.get(tax_id_type)
    if kind is None:
        raise ApplicationError(
            f"tax_id_type must be one of {', '.join(TAX_ID_TYPES)}", param="tax_id_type", code="invalid_tax_id_type"
        )
    try:
        return kind.clean(value)
    except ValidationError as exc:
        raise ApplicationError(
            f"This is not a valid {kind.label} ({str(exc).rstrip('.').lower()}); e.g. {kind.example}.",
            param="tax_id_value",
            code="invalid_tax_id",
        ) from None
