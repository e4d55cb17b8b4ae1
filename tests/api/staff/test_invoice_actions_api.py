"""Staff actions on invoices through the REST API: credit notes, void, mark uncollectible, resend, collect now. Each
needs a reason and lands in the audit log; bad input is a 4xx naming the field, with nothing written; only staff."""

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AuditEvent
from billing.invoicing.models import Invoice, InvoiceLine, LineKind
from billing.ledger.models import Grant
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.api.staff.test_invoices_api import closed  # noqa: F401


def plan_position(invoice: Invoice) -> int:
    return InvoiceLine.objects.get(invoice=invoice, kind=LineKind.PLAN_FEE).position


def test_staff_issue_a_credit_note_and_read_it_back(staff_api, closed):  # noqa: F811
    url = reverse("staff-credit-notes", args=[closed.pk])
    body = {
        "lines": [{"position": plan_position(closed), "amount": "0.04"}],
        "reason": "Plan fee overcharged",
        "idempotency_key": "cn-1",
    }
    response = staff_api.post(url, body, format="json")
    assert response.status_code == 201, response.json()
    note = response.json()
    assert (note["kind"], note["number"], note["status"], note["corrects_id"]) == (
        "credit_note",
        "CN-2026-000001",
        "issued",
        closed.pk,
    )
    assert (note["total"], note["charges"], note["lines"][0]["kind"], note["lines"][0]["amount"]) == (
        "-0.04",
        "-0.04",
        "reversal",
        "-0.04",
    )
    # Replayed: the same credit note, 200.
    again = staff_api.post(url, body, format="json")
    assert (again.status_code, again.json()["id"]) == (200, note["id"])
    detail = staff_api.get(reverse("staff-invoice", args=[closed.pk])).json()
    assert (detail["amount_due"], detail["credit_notes"]) == (
        "0.11",
        [{"id": note["id"], "number": "CN-2026-000001", "total": "-0.04"}],
    )
    listed = staff_api.get(reverse("staff-invoices"), {"kind": "credit_note"}).json()["results"]
    assert [row["number"] for row in listed] == ["CN-2026-000001"]
    event = AuditEvent.objects.get(action="invoicing.credit_note_issue")
    assert (event.actor_label, event.reason) == ("dana@operator.example", "Plan fee overcharged")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"lines": [{"position": 1}], "reason": "x"}, 400, "idempotency_key"),
        ({"lines": [{"position": 1}], "idempotency_key": "k"}, 400, "reason"),
        ({"lines": [{"position": 1}], "reason": "", "idempotency_key": "k"}, 400, "reason"),
        ({"lines": [], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": "1", "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": "one"}], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": 1, "amount": -1}], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": 1, "amount": 0.1}], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": 1, "amount": "1e99"}], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": 999}], "reason": "x", "idempotency_key": "k"}, 400, "lines"),
        ({"lines": [{"position": "PLAN", "amount": "99.00"}], "reason": "x", "idempotency_key": "k"}, 409, "lines"),
        ({"lines": [{"position": 1}], "reason": 5, "idempotency_key": "k"}, 400, "reason"),
        ({"lines": [{"position": 1}], "reason": "x" * 1001, "idempotency_key": "k"}, 400, "reason"),
    ],
)
def test_bad_credit_notes_are_refused_and_write_nothing(staff_api, closed, body, status, param):  # noqa: F811
    for line in body["lines"] if isinstance(body["lines"], list) else []:
        if line.get("position") == "PLAN":
            line["position"] = plan_position(closed)
    response = staff_api.post(reverse("staff-credit-notes", args=[closed.pk]), body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["error"]["param"].startswith(param)
    assert not Invoice.objects.filter(kind="credit_note").exists()
    assert not Grant.objects.filter(kind="refund").exists()
    assert not AuditEvent.objects.filter(action__startswith="invoicing.").exists()


def test_malformed_json_is_a_400(staff_api, closed):  # noqa: F811
    response = staff_api.post(
        reverse("staff-invoice-void", args=[closed.pk]), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert Invoice.objects.get(pk=closed.pk).status == "finalized"


def test_staff_void_an_invoice_once(staff_api, closed):  # noqa: F811
    url = reverse("staff-invoice-void", args=[closed.pk])
    assert staff_api.post(url, {}, format="json").status_code == 400  # a reason is required
    first = staff_api.post(url, {"reason": "Billed in error"}, format="json")
    assert first.status_code == 201
    assert (first.json()["kind"], first.json()["total"]) == ("credit_note", "-0.15")
    again = staff_api.post(url, {"reason": "Billed in error"}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert staff_api.get(reverse("staff-invoice", args=[closed.pk])).json()["status"] == "void"
    # A void invoice can be neither credited nor marked uncollectible.
    credit = staff_api.post(
        reverse("staff-credit-notes", args=[closed.pk]),
        {"lines": [{"position": 1}], "reason": "x", "idempotency_key": "k"},
        format="json",
    )
    assert credit.status_code == 409
    marked = staff_api.post(reverse("staff-invoice-uncollectible", args=[closed.pk]), {"reason": "x"}, format="json")
    assert marked.status_code == 409


def test_staff_mark_uncollectible_resend_and_the_audit_log(
    staff_api,
    closed,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    owner = UserFactory(username="olivia@acme.example", email="olivia@acme.example")
    MembershipFactory(user=owner, organization=closed.organization, role="owner")
    url = reverse("staff-invoice-uncollectible", args=[closed.pk])
    assert staff_api.post(url, {"reason": "Customer gone"}, format="json").json()["status"] == "uncollectible"
    assert staff_api.post(url, {"reason": "Customer gone"}, format="json").status_code == 200  # idempotent
    with django_capture_on_commit_callbacks(execute=True):
        resent = staff_api.post(reverse("staff-invoice-resend", args=[closed.pk]), {"reason": "Asked"}, format="json")
    assert resent.json() == {"recipients": ["olivia@acme.example"]}
    (message,) = mail.outbox
    assert "INV-2026-000001" in message.subject and "0.15 USD" in message.body
    actions = list(AuditEvent.objects.filter(action__startswith="invoicing.").values_list("action", "reason"))
    assert actions == [("invoicing.mark_uncollectible", "Customer gone"), ("invoicing.resend", "Asked")]


def test_unknown_invoices_and_credit_notes_are_404_and_only_staff_act(staff_api, client, closed):  # noqa: F811
    for name in ("staff-invoice-void", "staff-invoice-uncollectible", "staff-invoice-resend", "staff-invoice-collect"):
        assert staff_api.post(reverse(name, args=[987654]), {"reason": "x"}, format="json").status_code == 404
    note = staff_api.post(reverse("staff-invoice-void", args=[closed.pk]), {"reason": "x"}, format="json").json()
    # A credit note is not an invoice: it cannot be voided or credited in turn.
    assert (
        staff_api.post(reverse("staff-invoice-void", args=[note["id"]]), {"reason": "x"}, format="json").status_code
        == 404
    )
    customer = UserFactory(username="eve@example.com")
    client.force_login(customer)
    response = client.post(
        reverse("staff-invoice-void", args=[closed.pk]), {"reason": "x"}, content_type="application/json"
    )
    assert response.status_code == 403
