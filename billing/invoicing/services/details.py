"""An organization's billing details: who its invoices are addressed to (set by its owners and billing admins,
audited), sent to its Stripe customer after commit.

The Stripe sync runs in a Celery task, outside any transaction, one at a time per organization (a PostgreSQL
advisory lock), and always sends the latest version: every change bumps `version`, the calls' idempotency keys are
derived from it, and the sync loops until the version it sent is the latest, so two quick edits never leave Stripe
with the older one.
"""

import logging
from email.headerregistry import Address
from functools import partial
from typing import Any

import stripe
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F

from accounts.models import Organization
from accounts.services.audit import audit_record
from billing.invoicing.countries import COUNTRIES
from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import BillingDetails
from billing.invoicing.taxids import tax_id_clean
from billing.payments.services.customers import with_stripe_customer
from billing.payments.stripe_client import stripe_client
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

MAX_EMAILS = 10
# (field, label, longest, required)
TEXT_FIELDS = (
    ("legal_name", "legal name", 200, True),
    ("address_line1", "address line 1", 200, True),
    ("address_line2", "address line 2", 200, False),
    ("city", "city", 100, True),
    ("postal_code", "postal code", 20, False),
    ("region", "region", 100, False),
)
FIELDS = (*(f for f, *_ in TEXT_FIELDS), "country", "tax_id_type", "tax_id_value", "emails")


def _text(value: object, *, param: str, label: str, longest: int, required: bool) -> str:
    if not isinstance(value, str):
        raise ApplicationError(f"The {label} must be text.", param=param)
    text = " ".join(value.split())
    if required and not text:
        raise ApplicationError(f"Enter the {label}.", param=param)
    if len(text) > longest:
        raise ApplicationError(f"The {label} must be at most {longest} characters.", param=param)
    return text


def _emails(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApplicationError("The billing emails must be a list of addresses.", param="emails")
    emails = list(dict.fromkeys(item.strip().lower() for item in value if item.strip()))
    if len(emails) > MAX_EMAILS:
        raise ApplicationError(f"Give at most {MAX_EMAILS} billing emails.", param="emails")
    for email in emails:
        try:
            validate_email(email)
            Address(addr_spec=email)  # what send_mail will need to parse
        except (ValidationError, ValueError, IndexError):
            raise ApplicationError(f"{email!r} is not an email address.", param="emails") from None
    return emails


def billing_details_clean(
    *,
    legal_name: object,
    address_line1: object,
    address_line2: object,
    city: object,
    postal_code: object,
    region: object,
    country: object,
    tax_id_type: object,
    tax_id_value: object,
    emails: object,
) -> dict[str, Any]:
    """The details checked and normalized (the tax ID in Stripe's form), or an ApplicationError naming the field."""
    given = {
        "legal_name": legal_name,
        "address_line1": address_line1,
        "address_line2": address_line2,
        "city": city,
        "postal_code": postal_code,
        "region": region,
    }
    clean: dict[str, Any] = {
        field: _text(given[field], param=field, label=label, longest=longest, required=required)
        for field, label, longest, required in TEXT_FIELDS
    }
    if not isinstance(country, str) or country.strip().upper() not in COUNTRIES:
        raise ApplicationError("The country must be a two-letter ISO 3166 code, e.g. DE or US.", param="country")
    clean["country"] = country.strip().upper()
    kind = _text(tax_id_type, param="tax_id_type", label="tax ID type", longest=20, required=False)
    value = _text(tax_id_value, param="tax_id_value", label="tax ID", longest=40, required=False)
    if bool(kind) != bool(value):
        raise ApplicationError(
            "Give the tax ID's type and its number, or neither.", param="tax_id_value" if kind else "tax_id_type"
        )
    clean["tax_id_type"] = kind
    clean["tax_id_value"] = tax_id_clean(tax_id_type=kind, value=value) if kind else ""
    clean["emails"] = _emails(emails)
    return clean


@transaction.atomic
def billing_details_set(
    *,
    organization_id: int,
    actor: AbstractBaseUser | str | None,
    legal_name: object,
    address_line1: object,
    address_line2: object,
    city: object,
    postal_code: object,
    region: object,
    country: object,
    tax_id_type: object,
    tax_id_value: object,
    emails: object,
) -> BillingDetails:
    """Save the organization's billing details (all fields at once, as the form sends them; checked by
    billing_details_clean), and send them to its Stripe customer after commit. The next invoice finalized shows
    them; invoices already finalized keep the details they were issued with."""
    clean = billing_details_clean(
        legal_name=legal_name,
        address_line1=address_line1,
        address_line2=address_line2,
        city=city,
        postal_code=postal_code,
        region=region,
        country=country,
        tax_id_type=tax_id_type,
        tax_id_value=tax_id_value,
        emails=emails,
    )
    # The organization's row is the lock: two first saves at once do not both create.
    if not Organization.objects.select_for_update().filter(pk=organization_id).exists():
        raise InvoiceNotFound(f"No organization {organization_id}.", param="organization_id")
    existing = BillingDetails.objects.select_for_update().filter(organization_id=organization_id).first()
    previous = {field: getattr(existing, field) for field in FIELDS} if existing else None
    if existing is not None and previous == clean:
        return existing  # nothing changed: no new version, no Stripe call
    if existing is None:
        saved = BillingDetails.objects.create(organization_id=organization_id, **clean)
    else:
        BillingDetails.objects.filter(pk=existing.pk).update(**clean, version=F("version") + 1)
        saved = BillingDetails.objects.get(pk=existing.pk)
    audit_record(
        actor=actor,
        action="invoicing.billing_details.set",
        organization_id=organization_id,
        target=f"BillingDetails:{saved.pk}",
        before=previous,
        after=clean,
    )
    transaction.on_commit(lambda: _sync_later(organization_id), robust=True)
    return saved


def _sync_later(organization_id: int) -> None:
    from billing.invoicing.tasks import billing_details_stripe_sync_task

    billing_details_stripe_sync_task.delay(organization_id)


# The advisory lock's first key: this product's "billing details sync"; the second is the organization's id folded
# into 32 bits (two organizations sharing a key only wait for each other).
SYNC_LOCK = 0x6264_7331


def _lock_key(organization_id: int) -> list[int]:
    return [SYNC_LOCK, organization_id % 2**31]


def _try_lock(organization_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", _lock_key(organization_id))
        return bool(cursor.fetchone()[0])


def _unlock(organization_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", _lock_key(organization_id))


def _pending(organization_id: int) -> BillingDetails | None:
    return BillingDetails.objects.filter(
        organization_id=organization_id, stripe_synced_version__lt=F("version")
    ).first()


def billing_details_stripe_sync(*, organization_id: int) -> bool:
    """Send the organization's latest billing details to its Stripe customer; True if this call sent something.
    Stripe errors propagate (the task retries) after being kept on the details for support."""
    sent = False
    while _pending(organization_id) is not None:
        if not _try_lock(organization_id):
            return sent  # another sync is running; it sends the latest version before it stops
        try:
            while (details := _pending(organization_id)) is not None:
                try:
                    with_stripe_customer(organization_id=organization_id, call=partial(_customer_update, details))
                except (stripe.StripeError, ApplicationError) as exc:
                    BillingDetails.objects.filter(pk=details.pk).update(stripe_sync_error=str(exc)[:1000])
                    raise
                BillingDetails.objects.filter(pk=details.pk, stripe_synced_version__lt=details.version).update(
                    stripe_synced_version=details.version, stripe_sync_error=""
                )
                sent = True
        finally:
            _unlock(organization_id)
        # An edit committed after the last check above found the lock still held: its version is sent next loop.
    return sent


def _customer_update(details: BillingDetails, customer_id: str) -> None:
    client = stripe_client()
    key = f"organization-{details.organization_id}-details-{details.version}"
    address = {
        "line1": details.address_line1,
        "line2": details.address_line2,
        "city": details.city,
        "postal_code": details.postal_code,
        "state": details.region,
        "country": details.country,
    }
    params: dict[str, Any] = {"name": details.legal_name, "address": address}
    # Stripe's customer has one email (its own invoice emails go there): the first billing email.
    if details.emails:
        params["email"] = details.emails[0]
    client.v1.customers.update(customer_id, params=params, options={"idempotency_key": key})  # type: ignore[arg-type]
    wanted = (details.tax_id_type, details.tax_id_value) if details.tax_id_type else None
    present = False
    for tax_id in client.v1.customers.tax_ids.list(customer_id).data:
        if (tax_id.type, tax_id.value) == wanted and not present:
            present = True
            continue
        try:
            client.v1.customers.tax_ids.delete(customer_id, tax_id.id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:  # already gone (a sync retried after deleting it)
                raise
    if wanted is not None and not present:
        client.v1.customers.tax_ids.create(
            customer_id,
            params={"type": wanted[0], "value": wanted[1]},  # type: ignore[typeddict-item]
            options={"idempotency_key": f"{key}-tax-id"},
        )
