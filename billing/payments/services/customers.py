"""The Stripe customer of an organization, created on first need."""

import logging
from collections.abc import Callable
from typing import TypeVar

import stripe
from django.db import IntegrityError, transaction

from accounts.models import Organization
from billing.payments.errors import NotFound
from billing.payments.models import StripeCustomer
from billing.payments.services.common import stripe_unavailable
from billing.payments.stripe_client import stripe_client

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _customer_create(*, organization: Organization, idempotency_key: str) -> str:
    try:
        customer = stripe_client().v1.customers.create(
            params={"name": organization.name, "metadata": {"organization_id": str(organization.pk)}},
            options={"idempotency_key": idempotency_key},
        )
    except stripe.StripeError as exc:
        logger.warning("Stripe customer for organization %s not created: %s", organization.pk, exc)
        raise stripe_unavailable(exc) from exc
    return str(customer.id)


def stripe_customer_ensure(*, organization_id: int) -> str:
    """The organization's Stripe customer id, creating the customer at Stripe the first time.

    The Stripe call is made outside any transaction; two concurrent first calls send the same idempotency key (so
    Stripe creates one customer) and the unique row keeps one of them.
    """
    existing = StripeCustomer.objects.filter(organization_id=organization_id).values_list(
        "stripe_customer_id", flat=True
    )
    if customer_id := existing.first():
        return customer_id
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise NotFound("organization not found", param="organization_id")
    customer_id = _customer_create(
        organization=organization, idempotency_key=f"organization-{organization_id}-customer"
    )
    try:
        with transaction.atomic():
            StripeCustomer.objects.create(organization_id=organization_id, stripe_customer_id=customer_id)
    except IntegrityError:
        return StripeCustomer.objects.get(organization_id=organization_id).stripe_customer_id
    return customer_id


def _customer_is_missing(exc: stripe.StripeError) -> bool:
    """Stripe does not know the customer: deleted in the dashboard, or the keys now point at another account/mode."""
    if not isinstance(exc, stripe.InvalidRequestError):
        return False
    error = exc.error
    return exc.http_status == 404 or (
        error is not None and getattr(error, "code", None) == "resource_missing" and error.param == "customer"
    )


def stripe_customer_replace(*, organization_id: int, stale_customer_id: str) -> str:
    """Create a new Stripe customer for an organization whose stored one Stripe no longer knows."""
    organization = Organization.objects.get(pk=organization_id)
    customer_id = _customer_create(
        organization=organization, idempotency_key=f"organization-{organization_id}-customer-after-{stale_customer_id}"
    )
    StripeCustomer.objects.filter(organization_id=organization_id, stripe_customer_id=stale_customer_id).update(
        stripe_customer_id=customer_id
    )
    logger.warning(
        "organization %s: Stripe customer %s replaced by %s", organization_id, stale_customer_id, customer_id
    )
    return StripeCustomer.objects.get(organization_id=organization_id).stripe_customer_id


def with_stripe_customer(*, organization_id: int, call: Callable[[str], T]) -> T:
    """Run `call(customer_id)`; if Stripe answers that the customer does not exist, replace it once and retry."""
    customer_id = stripe_customer_ensure(organization_id=organization_id)
    try:
        return call(customer_id)
    except stripe.StripeError as exc:
        if not _customer_is_missing(exc):
            raise
    return call(stripe_customer_replace(organization_id=organization_id, stale_customer_id=customer_id))
