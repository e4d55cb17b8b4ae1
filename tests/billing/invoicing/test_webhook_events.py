"""Invoices announce themselves to the organization's webhooks: invoice.issued when finalized, once;
invoice.payment_failed per failed payment attempt Stripe reports, once each."""

import json

import time_machine

from billing.invoicing import services
from billing.invoicing.services.collection import HANDLERS
from billing.webhooks import services as webhooks
from billing.webhooks.models import WebhookDelivery, WebhookEvent
from tests.billing.invoicing.conftest import at
from tests.billing.invoicing.test_close import OCT, october


def events(event_type):
    return [json.loads(body) for body in WebhookEvent.objects.filter(type=event_type).values_list("body", flat=True)]


def test_an_issued_invoice_and_its_failed_payments_are_sent_once(org):
    endpoint = webhooks.webhook_endpoint_create(
        organization_id=org.pk,
        actor=None,
        url="https://hooks.example.com/in",
        event_types=["invoice.issued", "invoice.payment_failed"],
    )
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
        services.invoice_close(organization_id=org.pk, period_start=OCT)  # resumed or repeated: nothing new
    (issued,) = events("invoice.issued")
    assert issued["organization_id"] == org.pk
    assert (issued["data"]["invoice"]["number"], issued["data"]["invoice"]["total"]) == ("INV-2026-000001", "0.15")
    stripe_invoice = {"id": "in_hooks", "metadata": {"invoice_id": str(invoice.pk), "number": invoice.number}}
    HANDLERS["invoice.payment_failed"](stripe_invoice | {"attempt_count": 1})
    HANDLERS["invoice.payment_failed"](stripe_invoice | {"attempt_count": 1})  # Stripe sent it twice
    HANDLERS["invoice.payment_failed"](stripe_invoice | {"attempt_count": 2})
    failed = events("invoice.payment_failed")
    assert sorted(e["data"]["invoice"]["payment_attempts"] for e in failed) == [1, 2]
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 3
