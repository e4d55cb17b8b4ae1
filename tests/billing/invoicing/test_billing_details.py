"""Billing details: checked field by field (tax IDs by format, with python-stdnum), audited, snapshot onto each
invoice at finalization and frozen there, sent to the Stripe customer (localstripe) with idempotency keys, and the
addresses invoices and payment emails go to."""

import pytest
import time_machine
from django.db import DatabaseError, transaction

from accounts.models import AuditEvent, Role
from billing.invoicing import selectors, services
from billing.invoicing.models import BillingDetails, Invoice
from billing.invoicing.services.details import billing_details_set, billing_details_stripe_sync
from billing.invoicing.taxids import tax_id_clean
from billing.payments import services as payments
from billing.payments.stripe_client import stripe_client
from core.errors import ApplicationError
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.billing.invoicing.conftest import at
from tests.billing.invoicing.test_close import NOV, OCT, october

ACME = {
    "legal_name": "Acme GmbH",
    "address_line1": "Hauptstraße 1",
    "address_line2": "",
    "city": "Berlin",
    "postal_code": "10115",
    "region": "",
    "country": "de",
    "tax_id_type": "eu_vat",
    "tax_id_value": "DE 136 695 976",
    "emails": ["Billing@Acme.example", "ap@acme.example", "billing@acme.example"],
}


def details_set(org, **changes):
    return billing_details_set(organization_id=org.pk, actor="test", **(ACME | changes))


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        ("eu_vat", "de 136.695.976", "DE136695976"),
        ("eu_vat", "FR40303265045", "FR40303265045"),
        ("gb_vat", "GB 980 7806 84", "GB980780684"),
        ("ch_vat", "CHE-107.787.577 IVA", "CHE-107.787.577 IVA"),
        ("no_vat", "NO 995 525 828 MVA", "995525828MVA"),
        ("us_ein", "042103594", "04-2103594"),
        ("au_abn", "83 914 571 673", "83914571673"),
    ],
)
def test_a_tax_id_is_checked_by_format_and_kept_in_stripes_form(kind, typed, stored):
    assert tax_id_clean(tax_id_type=kind, value=typed) == stored


@pytest.mark.parametrize(
    ("kind", "typed", "says"),
    [
        ("eu_vat", "DE136695977", "check digit"),
        ("eu_vat", "DE123", "length"),
        ("gb_vat", "GB98078068", "length"),
        ("us_ein", "00-0000000", "not a valid US EIN"),
        ("xx_vat", "123", "tax_id_type must be one of"),
    ],
)
def test_a_malformed_tax_id_is_refused_with_what_is_wrong(kind, typed, says):
    with pytest.raises(ApplicationError, match=says):
        tax_id_clean(tax_id_type=kind, value=typed)


def test_details_are_saved_normalized_and_audited(org):
    details = details_set(org)
    assert (details.country, details.tax_id_value, details.emails, details.version) == (
        "DE",
        "DE136695976",
        ["billing@acme.example", "ap@acme.example"],
        1,
    )
    event = AuditEvent.objects.get(action="invoicing.billing_details.set", organization=org)
    assert event.actor_label == "test"
    assert details_set(org, city="München").version == 2
    # Saving the same details again is no change: no new version, no Stripe sync, no audit event.
    assert details_set(org, city="München").version == 2
    assert AuditEvent.objects.filter(action="invoicing.billing_details.set").count() == 2


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"legal_name": "  "}, "legal_name"),
        ({"legal_name": 42}, "legal_name"),
        ({"legal_name": "x" * 201}, "legal_name"),
        ({"city": None}, "city"),
        ({"country": "Germany"}, "country"),
        ({"country": "XX"}, "country"),
        ({"country": ["DE"]}, "country"),
        ({"tax_id_type": "eu_vat", "tax_id_value": ""}, "tax_id_value"),
        ({"tax_id_type": "", "tax_id_value": "DE136695976"}, "tax_id_type"),
        ({"tax_id_value": "DE136695977"}, "tax_id_value"),
        ({"emails": "billing@acme.example"}, "emails"),
        ({"emails": ["not an address"]}, "emails"),
        ({"emails": [f"a{n}@acme.example" for n in range(11)]}, "emails"),
        ({"emails": [1]}, "emails"),
    ],
)
def test_bad_details_are_refused_and_nothing_is_written(org, changes, param):
    with pytest.raises(ApplicationError) as refused:
        details_set(org, **changes)
    assert refused.value.param == param
    assert not BillingDetails.objects.exists()
    assert not AuditEvent.objects.filter(action="invoicing.billing_details.set").exists()


def test_invoices_and_payment_emails_go_to_the_billing_emails_else_the_owners_and_billing_admins(org):
    MembershipFactory(user=UserFactory(username="olga@acme.example"), organization=org, role=Role.OWNER)
    MembershipFactory(user=UserFactory(username="bill@acme.example"), organization=org, role=Role.BILLING_ADMIN)
    MembershipFactory(user=UserFactory(username="dev@acme.example"), organization=org, role=Role.DEVELOPER)
    assert selectors.billing_recipients(organization_id=org.pk) == ["bill@acme.example", "olga@acme.example"]
    details_set(org, emails=[])
    assert selectors.billing_recipients(organization_id=org.pk) == ["bill@acme.example", "olga@acme.example"]
    details_set(org)
    assert selectors.billing_recipients(organization_id=org.pk) == ["billing@acme.example", "ap@acme.example"]


@pytest.mark.django_db(transaction=True)
def test_the_invoice_is_billed_to_the_details_at_finalization_and_keeps_them(org):
    details_set(org)
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    billed_to = {
        "legal_name": "Acme GmbH",
        "address": {
            "line1": "Hauptstraße 1",
            "line2": "",
            "city": "Berlin",
            "postal_code": "10115",
            "region": "",
            "country": "DE",
        },
        "tax_id": {"type": "eu_vat", "value": "DE136695976"},
        "emails": ["billing@acme.example", "ap@acme.example"],
    }
    assert invoice.billed_to == billed_to
    # A later change reaches the next invoice only.
    details_set(org, legal_name="Acme Europe GmbH", tax_id_type="", tax_id_value="")
    with time_machine.travel(at("2026-12-01 01:00:01")):
        november = services.invoice_close(organization_id=org.pk, period_start=NOV)
    assert november.billed_to["legal_name"] == "Acme Europe GmbH"
    assert november.billed_to["tax_id"] is None
    invoice.refresh_from_db()
    assert invoice.billed_to == billed_to
    # And the database refuses to change a finalized invoice's billed-to, whoever asks.
    with pytest.raises(DatabaseError, match="billed-to can never change"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(billed_to={"legal_name": "Someone else"})
    invoice.refresh_from_db()
    assert invoice.billed_to == billed_to


@pytest.mark.django_db(transaction=True)
def test_an_invoice_without_details_is_billed_to_nobody_in_particular(org):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert invoice.billed_to == {}


@pytest.mark.django_db(transaction=True)
def test_details_reach_the_stripe_customer_once_per_version(org, localstripe):
    customer_id = payments.stripe_customer_ensure(organization_id=org.pk)
    details_set(org)  # the task is enqueued after commit; run the sync here as the worker would
    assert billing_details_stripe_sync(organization_id=org.pk) is True
    client = stripe_client()
    customer = client.v1.customers.retrieve(customer_id)
    assert (customer.name, customer.email) == ("Acme GmbH", "billing@acme.example")
    assert (customer.address.line1, customer.address.city, customer.address.country) == (
        "Hauptstraße 1",
        "Berlin",
        "DE",
    )
    [tax_id] = client.v1.customers.tax_ids.list(customer_id).data
    assert (tax_id.type, tax_id.value) == ("eu_vat", "DE136695976")
    # Nothing new: nothing sent.
    assert billing_details_stripe_sync(organization_id=org.pk) is False
    # A new tax ID replaces the old one at Stripe (a type localstripe lacks, covered by the launcher).
    details_set(org, legal_name="Acme Ltd", country="GB", tax_id_type="gb_vat", tax_id_value="980780684")
    assert billing_details_stripe_sync(organization_id=org.pk) is True
    assert client.v1.customers.retrieve(customer_id).name == "Acme Ltd"
    assert [(t.type, t.value) for t in client.v1.customers.tax_ids.list(customer_id).data] == [
        ("gb_vat", "GB980780684")
    ]
    details_set(org, tax_id_type="", tax_id_value="")
    billing_details_stripe_sync(organization_id=org.pk)
    assert client.v1.customers.tax_ids.list(customer_id).data == []
    saved = BillingDetails.objects.get(organization=org)
    assert (saved.stripe_synced_version, saved.stripe_sync_error) == (saved.version, "")


@pytest.mark.django_db(transaction=True)
def test_two_first_saves_at_once_make_one_row_and_two_versions(org):
    """The organization's row is locked by each save: the second waits, then updates what the first created."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def save(city: str) -> None:
        try:
            barrier.wait()
            details_set(org, city=city)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(city,)) for city in ("Berlin", "Hamburg")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = BillingDetails.objects.get(organization=org)
    assert saved.version == 2 and saved.city in ("Berlin", "Hamburg")
    assert AuditEvent.objects.filter(action="invoicing.billing_details.set").count() == 2


@pytest.mark.django_db(transaction=True)
def test_one_stripe_sync_at_a_time_per_organization(org, localstripe):
    """A sync that finds another one running leaves the work to it (the running one sends the latest version)."""
    from django.db import connections

    from billing.invoicing.services.details import _lock_key

    customer_id = payments.stripe_customer_ensure(organization_id=org.pk)
    details_set(org)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s::int4, %s::int4)", _lock_key(org.pk))
        assert billing_details_stripe_sync(organization_id=org.pk) is False
        assert stripe_client().v1.customers.retrieve(customer_id).name == "Acme"
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", _lock_key(org.pk))
    finally:
        other.close()
    assert billing_details_stripe_sync(organization_id=org.pk) is True
    assert stripe_client().v1.customers.retrieve(customer_id).name == "Acme GmbH"
