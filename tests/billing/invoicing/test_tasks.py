"""Celery beat closes ended periods with no staff action, and resumes closes a crashed worker left open."""

import pytest
import time_machine

from billing.invoicing import selectors, tasks
from billing.invoicing.models import Invoice
from billing.ledger import services as ledger
from tests.accounts.factories import OrganizationFactory
from tests.billing.invoicing.conftest import at, booked_at, call, fund
from tests.billing.invoicing.test_close import OCT, october


@pytest.fixture
def eager(settings):
    """Tasks queued with .delay() run at once, in this process (the worker's part), through Django's settings, which
    Celery's configuration reads (so nothing is left changed on the Celery app for the next tests)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True


def test_beat_closes_every_ended_period_once(org, eager, localstripe):
    other = OrganizationFactory(name="Other")
    october(org)
    with booked_at(at("2026-10-20 00:00")):
        fund(other, "1.00")
        call(other)
    with time_machine.travel(at("2026-11-01 00:59:00")):  # inside the grace window: nothing yet
        assert tasks.invoices_close_due_task.apply().get() == 0
    with time_machine.travel(at("2026-12-01 01:00:01")):  # October and November are over
        assert sorted(selectors.organizations_due()) == sorted([org.pk, other.pk])
        assert tasks.invoices_close_due_task.apply().get() == 2
        assert tasks.invoices_close_due_task.apply().get() == 0
    invoices = Invoice.objects.order_by("organization_id", "period_start")
    # Pushed to Stripe: what asks for nothing is paid at once; October's 0.15 found no saved card to charge.
    assert [(i.organization_id, i.period_start.month, i.status, i.total_minor) for i in invoices] == [
        (org.pk, 10, "finalized", 15),
        (org.pk, 11, "paid", 0),
        (other.pk, 10, "paid", 0),
        (other.pk, 11, "paid", 0),
    ]
    assert all(i.stripe_invoice_id and i.pushed_at for i in invoices)
    assert invoices[0].payment_error == "No saved card to charge."
    assert sorted(i.number for i in invoices) == [f"INV-2026-00000{n}" for n in range(1, 5)]


def test_beat_resumes_a_close_left_open(org, eager, localstripe):
    with booked_at(at("2026-10-02 00:00")):
        ledger.wallet_get_or_create(organization_id=org.pk)
    stuck = Invoice.objects.create(
        organization=org,
        wallet=ledger.wallet_get_or_create(organization_id=org.pk),
        currency="USD",
        period_start=OCT,
        period_end=at("2026-11-01 00:00"),
    )
    with time_machine.travel(at("2026-11-05 00:00")):
        assert selectors.organizations_due() == [org.pk]
        assert tasks.invoices_close_organizations_task.apply(args=[[org.pk]]).get() == [stuck.pk]
    stuck.refresh_from_db()
    # Nothing due: paid at Stripe at once.
    assert (stuck.status, stuck.number, stuck.total_minor) == ("paid", "INV-2026-000001", 0)
