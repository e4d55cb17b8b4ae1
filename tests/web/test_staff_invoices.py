"""The staff invoices console (HTML): the list with its filters, one invoice with its lines and ledger links, and
the action forms. Bad input answers 4xx with the message and writes nothing; customers cannot reach it."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from billing.invoicing.models import Invoice, InvoiceLine, LineKind
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.api.staff.test_invoices_api import closed  # noqa: F401


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(username="sam@staff.example.com", is_staff=True))
    return client


def test_staff_list_invoices_with_filters(staff_client, closed):  # noqa: F811
    OrganizationFactory(name="Other")
    url = reverse("staff-invoices-list")
    page = staff_client.get(url).content.decode()
    assert "INV-2026-000001" in page and "0.15 USD" in page
    assert "INV-2026-000001" in staff_client.get(url, {"status": "finalized", "period": "2026-10"}).content.decode()
    assert "INV-2026-000001" not in staff_client.get(url, {"status": "paid"}).content.decode()
    assert "INV-2026-000001" not in staff_client.get(url, {"period": "2026-09"}).content.decode()
    assert staff_client.get(url, {"period": "October"}).status_code == 400
    assert staff_client.get(url, {"organization": "x"}).status_code == 400


def test_staff_read_one_invoice_and_issue_a_credit_note_from_the_page(staff_client, closed):  # noqa: F811
    detail = reverse("staff-invoices-detail", args=[closed.pk])
    page = staff_client.get(detail).content.decode()
    assert (
        "Still due" in page and "0.15 USD" in page and reverse("staff-journal", args=[closed.organization_id]) in page
    )
    plan = InvoiceLine.objects.get(invoice=closed, kind=LineKind.PLAN_FEE)
    action = reverse("staff-invoices-action", args=[closed.pk, "credit-note"])
    form = {"idempotency_key": "page-1", "reason": "Overcharged", f"line_{plan.position}": "on"}
    # Bad input: no reason, no line, a bad amount, too much: 4xx, and nothing written.
    for bad, status in (
        ({**form, "reason": ""}, 400),
        ({"idempotency_key": "page-1", "reason": "x"}, 400),
        ({**form, f"amount_{plan.position}": "abc"}, 400),
        ({**form, f"amount_{plan.position}": "0"}, 400),
        ({**form, f"amount_{plan.position}": "5.00"}, 409),
    ):
        response = staff_client.post(action, bad)
        assert response.status_code == status, bad
    assert not Invoice.objects.filter(kind="credit_note").exists()
    # The page shown again keeps what was entered: the ticked line, its amount, the reason.
    again = staff_client.post(action, {**form, f"amount_{plan.position}": "5.00"}).content.decode()
    assert f'name="line_{plan.position}" data-testid="credit-line-{plan.position}" checked' in again
    assert f'name="amount_{plan.position}" value="5.00"' in again and ">Overcharged</textarea>" in again
    response = staff_client.post(action, {**form, f"amount_{plan.position}": "0.04"})
    note = Invoice.objects.get(kind="credit_note")
    assert response.status_code == 302 and response["Location"] == reverse("staff-invoices-detail", args=[note.pk])
    assert "CN-2026-000001" in staff_client.get(response["Location"]).content.decode()
    # The same form sent twice (a double click) makes no second credit note.
    staff_client.post(action, {**form, f"amount_{plan.position}": "0.04"})
    assert Invoice.objects.filter(kind="credit_note").count() == 1
    assert "0.11 USD" in staff_client.get(detail).content.decode()


def test_unknown_actions_and_invoices_are_404_and_customers_are_sent_away(client, staff_client, closed):  # noqa: F811
    assert (
        staff_client.post(reverse("staff-invoices-action", args=[closed.pk, "delete"]), {"reason": "x"}).status_code
        == 404
    )
    assert staff_client.get(reverse("staff-invoices-detail", args=[987654])).status_code == 404
    staff_client.logout()
    client.force_login(UserFactory(username="eve@example.com"))
    response = client.post(reverse("staff-invoices-action", args=[closed.pk, "void"]), {"reason": "x"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert Invoice.objects.get(pk=closed.pk).status == "finalized"
    assert not AuditEvent.objects.filter(action__startswith="invoicing.").exists()
