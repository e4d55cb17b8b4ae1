"""The organization's Stripe customer: created once, and replaced when Stripe no longer knows it."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from billing.payments.models import StripeCustomer
from billing.payments.services.customers import stripe_customer_ensure, with_stripe_customer
from billing.payments.stripe_client import stripe_client
from tests.billing.payments.helpers import close_db_connections


def test_the_customer_is_created_once_and_names_the_organization(org_a, localstripe):
    first = stripe_customer_ensure(organization_id=org_a.pk)
    assert stripe_customer_ensure(organization_id=org_a.pk) == first
    customer = stripe_client().v1.customers.retrieve(first)
    assert (customer.name, customer.metadata.to_dict()) == ("Org A", {"organization_id": str(org_a.pk)})


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_uses_keep_one_customer(org_a, localstripe):
    def ensure(_: int) -> str:
        try:
            return stripe_customer_ensure(organization_id=org_a.pk)
        finally:
            close_db_connections()

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(ensure, range(4)))
    assert ids == {StripeCustomer.objects.get(organization=org_a).stripe_customer_id}


def test_a_customer_stripe_no_longer_knows_is_replaced(org_a, localstripe):
    StripeCustomer.objects.create(organization=org_a, stripe_customer_id="cus_from_another_account")
    customer = with_stripe_customer(
        organization_id=org_a.pk, call=lambda customer_id: stripe_client().v1.customers.retrieve(customer_id)
    )
    assert customer.id != "cus_from_another_account"
    assert StripeCustomer.objects.get(organization=org_a).stripe_customer_id == customer.id
