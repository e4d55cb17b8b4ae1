"""Credit notes and voids: a finalized invoice never changes; a credit note reverses named lines (in full or in part)
and gives the amount back through one ledger grant; numbers are gapless in their own series; a replayed key or a
second void makes no second credit note; two staff voiding at once make one; reconcile holds after every test
(the autouse _books_agree fixture)."""

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction

from accounts.models import AuditEvent
from billing.invoicing import selectors, services
from billing.invoicing.errors import InvoiceConflict, InvoiceNotFound
from billing.invoicing.models import Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing.invoicing.services import collection
from billing.invoicing.services.credit_notes import LineCredit, credit_note_issue, invoice_void
from billing.ledger.models import Grant, Wallet
from core.errors import ApplicationError
from tests.billing.invoicing.conftest import at, usd
from tests.billing.invoicing.test_close import OCT, october
from tests.billing.ledger.test_concurrency import in_parallel


def closed(org) -> Invoice:
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        return services.invoice_close(organization_id=org.pk, period_start=OCT)


def line_of(invoice: Invoice, kind: str, model: str | None = None, token_kind: str = "") -> InvoiceLine:
    lines = InvoiceLine.objects.filter(invoice=invoice, kind=kind)
    if model is not None:
        lines = lines.filter(model__slug=model, token_kind=token_kind)
    return lines.get()


def unfunded(org) -> int:
    return Wallet.objects.get(organization=org).unfunded_nano


def issue(invoice: Invoice, *lines: LineCredit, key: str = "k1", reason: str = "Overcharged") -> Invoice:
    return credit_note_issue(
        invoice_id=invoice.pk, lines=list(lines), reason=reason, idempotency_key=key, actor="staff@example.com"
    ).credit_note


@pytest.mark.django_db
def test_a_partial_credit_note_on_an_unpaid_invoice_lowers_what_is_due_and_repays_the_debt(org):
    invoice = closed(org)
    assert (invoice.total_minor, unfunded(org)) == (15, usd("0.15045"))
    plan = line_of(invoice, LineKind.PLAN_FEE)
    note = issue(invoice, LineCredit(plan.position, usd("0.04")))
    # The credit note: its own series, issued, minus 0.04 of the plan fee line it names.
    assert (note.kind, note.status, note.number, note.corrects_id) == (
        "credit_note",
        "issued",
        "CN-2026-000001",
        invoice.pk,
    )
    (reversal,) = InvoiceLine.objects.filter(invoice=note)
    assert (reversal.kind, reversal.reverses_id, reversal.amount_nano) == ("reversal", plan.pk, -usd("0.04"))
    assert (note.charges_nano, note.credit_applied_nano, note.total_exact_nano, note.total_minor) == (
        -usd("0.04"),
        0,
        -usd("0.04"),
        -4,
    )
    # Money: a refund grant of 0.04 that repaid 0.04 of the overdraft the invoice billed; 0.11 is still due.
    grant = Grant.objects.get(pk=note.credit_grant_id)
    assert (grant.kind, grant.amount_nano, grant.source_ref) == ("refund", usd("0.04"), "credit_note:CN-2026-000001")
    assert unfunded(org) == usd("0.11045")
    assert selectors.amount_due_minor(invoice=invoice) == 11
    # The invoice itself never changed, and Stripe's payment of what is left books only that.
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total_minor, invoice.number) == ("finalized", 15, "INV-2026-000001")
    collection.invoice_paid(invoice_id=invoice.pk)
    assert unfunded(org) == usd("0.00045")  # the sub-cent carry, as without a credit note
    event = AuditEvent.objects.get(action="invoicing.credit_note_issue")
    assert (event.reason, event.actor_label, event.detail["credit_note"]) == (
        "Overcharged",
        "staff@example.com",
        "CN-2026-000001",
    )


@pytest.mark.django_db
def test_crediting_a_paid_invoice_returns_the_amount_as_customer_credit(org):
    invoice = closed(org)
    collection.invoice_paid(invoice_id=invoice.pk)
    wallet = Wallet.objects.get(organization=org)
    available = wallet.available_nano
    usage = line_of(invoice, LineKind.USAGE, "gpt-4o", "output")
    note = issue(invoice, LineCredit(usage.position))  # the whole line
    (reversal,) = InvoiceLine.objects.filter(invoice=note)
    assert (reversal.quantity, reversal.unit, reversal.amount_nano) == (usage.quantity, usage.unit, -usage.amount_nano)
    wallet.refresh_from_db()
    assert wallet.available_nano - available == usage.amount_nano == usd("0.20")
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"


@pytest.mark.django_db
def test_a_line_is_never_credited_beyond_its_amount_and_bad_requests_write_nothing(org):
    invoice = closed(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    credit = line_of(invoice, LineKind.CREDIT_PAID)
    issue(invoice, LineCredit(plan.position, usd("0.06")))
    refused = [
        ([LineCredit(plan.position, usd("0.05"))], "k2", "Overcharged", InvoiceConflict, "lines"),  # 0.04 left
        ([LineCredit(plan.position, 0)], "k2", "Overcharged", ApplicationError, "lines"),
        ([LineCredit(plan.position, -5)], "k2", "Overcharged", ApplicationError, "lines"),
        ([LineCredit(999)], "k2", "Overcharged", ApplicationError, "lines"),
        ([LineCredit(credit.position)], "k2", "Overcharged", ApplicationError, "lines"),  # not a charge
        ([LineCredit(plan.position), LineCredit(plan.position)], "k2", "Overcharged", ApplicationError, "lines"),
        ([], "k2", "Overcharged", ApplicationError, "lines"),
        ([LineCredit(plan.position)], "k2", "   ", ApplicationError, "reason"),
        ([LineCredit(plan.position)], "", "Overcharged", ApplicationError, "idempotency_key"),
        ([LineCredit(plan.position)], "void", "Overcharged", ApplicationError, "idempotency_key"),
        # The first key again with other lines: a conflict, not a second credit note.
        ([LineCredit(plan.position, usd("0.01"))], "k1", "Overcharged", InvoiceConflict, "idempotency_key"),
    ]
    for lines, key, reason, error, param in refused:
        with pytest.raises(error) as raised:
            credit_note_issue(invoice_id=invoice.pk, lines=lines, reason=reason, idempotency_key=key, actor="s")
        assert raised.value.param == param, (lines, key, reason)
    with pytest.raises(InvoiceNotFound):
        issue(Invoice(pk=987654), LineCredit(1))
    assert Invoice.objects.filter(kind="credit_note").count() == 1
    # What is left of the line can still be credited, whole.
    rest = issue(invoice, LineCredit(plan.position), key="k3")
    assert rest.total_exact_nano == -usd("0.04") and rest.number == "CN-2026-000002"


@pytest.mark.django_db
def test_a_replayed_key_returns_the_first_credit_note(org):
    invoice = closed(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    first = credit_note_issue(
        invoice_id=invoice.pk,
        lines=[LineCredit(plan.position, usd("0.02"))],
        reason="r",
        idempotency_key="k",
        actor="s",
    )
    again = credit_note_issue(
        invoice_id=invoice.pk,
        lines=[LineCredit(plan.position, usd("0.02"))],
        reason="r",
        idempotency_key="k",
        actor="s",
    )
    assert (first.created, again.created, again.credit_note.pk) == (True, False, first.credit_note.pk)
    assert Grant.objects.filter(kind="refund").count() == 1


@pytest.mark.django_db
def test_void_is_a_credit_note_of_every_line_and_forgives_exactly_what_the_invoice_billed(org):
    invoice = closed(org)
    debt = unfunded(org)
    note = invoice_void(invoice_id=invoice.pk, reason="Billed in error", actor="staff@example.com").credit_note
    invoice.refresh_from_db()
    assert (invoice.status, invoice.voided_at is not None) == ("void", True)
    lines = InvoiceLine.objects.filter(invoice=invoice).exclude(kind__in=("refund", "dispute"))
    assert InvoiceLine.objects.filter(invoice=note).count() == lines.count()
    assert (note.charges_nano, note.credit_applied_nano, note.carry_in_nano) == (
        -invoice.charges_nano,
        -invoice.credit_applied_nano,
        -invoice.carry_in_nano,
    )
    assert note.total_minor == -15
    # The debt the invoice billed is forgiven to the nano; the prepaid credit it applied stays spent.
    assert Grant.objects.get(pk=note.credit_grant_id).amount_nano == debt == usd("0.15045")
    assert unfunded(org) == 0
    # Again: the same credit note, nothing more.
    again = invoice_void(invoice_id=invoice.pk, reason="again", actor="s")
    assert (again.created, again.credit_note.pk) == (False, note.pk)
    assert AuditEvent.objects.filter(action="invoicing.void").count() == 1


@pytest.mark.django_db
def test_void_after_a_partial_credit_note_reverses_only_what_is_left(org):
    invoice = closed(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    first = issue(invoice, LineCredit(plan.position, usd("0.03")))
    void = invoice_void(invoice_id=invoice.pk, reason="Billed in error", actor="s").credit_note
    grants = Grant.objects.filter(pk__in=[first.credit_grant_id, void.credit_grant_id])
    assert sum(g.amount_nano for g in grants) == usd("0.15045")
    assert unfunded(org) == 0


@pytest.mark.django_db
def test_a_paid_or_void_invoice_cannot_be_voided_nor_a_void_one_credited(org):
    invoice = closed(org)
    collection.invoice_paid(invoice_id=invoice.pk)
    with pytest.raises(InvoiceConflict, match="paid"):
        invoice_void(invoice_id=invoice.pk, reason="x", actor="s")
    assert not Invoice.objects.filter(kind="credit_note").exists()


@pytest.mark.django_db
def test_an_issued_credit_note_and_its_lines_never_change(org):
    invoice = closed(org)
    note = issue(invoice, LineCredit(line_of(invoice, LineKind.PLAN_FEE).position))
    for statement in (
        f"UPDATE invoicing_invoice SET total_minor = -1 WHERE id = {note.pk}",
        f"UPDATE invoicing_invoice SET reason = 'other' WHERE id = {note.pk}",
        f"UPDATE invoicing_invoice SET status = 'void' WHERE id = {note.pk}",
        f"DELETE FROM invoicing_invoice WHERE id = {note.pk}",
        f"UPDATE invoicing_invoiceline SET amount_nano = -1 WHERE invoice_id = {note.pk}",
        f"DELETE FROM invoicing_invoiceline WHERE invoice_id = {note.pk}",
    ):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    # A credit note must name what it corrects, and its signs are a credit note's.
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE invoicing_invoice SET corrects_id = NULL WHERE id = {note.pk}")


@pytest.mark.django_db
def test_credit_note_numbers_are_gapless_and_apart_from_invoice_numbers(org):
    invoice = closed(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    numbers = [issue(invoice, LineCredit(plan.position, usd("0.01")), key=f"k{i}").number for i in range(3)]
    with pytest.raises(InvoiceConflict):  # refused: rolled back, its number given back
        issue(invoice, LineCredit(plan.position, usd("0.50")), key="too-much")
    numbers.append(issue(invoice, LineCredit(plan.position, usd("0.01")), key="k9").number)
    assert numbers == ["CN-2026-000001", "CN-2026-000002", "CN-2026-000003", "CN-2026-000004"]
    assert invoice.number == "INV-2026-000001"


@pytest.mark.django_db
def test_the_next_close_ignores_credit_notes(org):
    invoice = closed(org)
    issue(invoice, LineCredit(line_of(invoice, LineKind.PLAN_FEE).position))
    with time_machine.travel(at("2026-12-01 01:00:01")):
        november = services.invoice_close(organization_id=org.pk, period_start=at("2026-11-01 00:00"))
    assert (november.kind, november.number, november.carry_in_nano) == ("invoice", "INV-2026-000002", 450_000)


@pytest.mark.django_db
def test_reconcile_finds_a_credit_note_that_does_not_add_up(org):
    invoice = closed(org)
    note = issue(invoice, LineCredit(line_of(invoice, LineKind.PLAN_FEE).position))
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # the guard off, to break it on purpose
        try:
            cursor.execute(f"UPDATE invoicing_invoiceline SET amount_nano = -200000000 WHERE invoice_id = {note.pk}")
            problems = selectors.invoices_reconcile(organization_id=org.pk)
            cursor.execute(f"UPDATE invoicing_invoiceline SET amount_nano = -100000000 WHERE invoice_id = {note.pk}")
        finally:
            cursor.execute("SET session_replication_role = origin")
    assert any("reverses line" in p for p in problems) and any("totals do not add up" in p for p in problems)
    assert selectors.invoices_reconcile(organization_id=org.pk) == []


@pytest.mark.django_db(transaction=True)
def test_two_staff_voiding_at_once_make_one_credit_note(org):
    invoice = closed(org)
    results = in_parallel(
        lambda i: invoice_void(invoice_id=invoice.pk, reason=f"staff {i}", actor=f"staff{i}"), 6, workers=6
    )
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.created for r in results) == [False] * 5 + [True]
    assert len({r.credit_note.pk for r in results}) == 1
    assert Invoice.objects.filter(kind="credit_note").count() == 1
    assert Grant.objects.filter(kind="refund").count() == 1
    assert unfunded(org) == 0
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.VOID


@pytest.mark.django_db(transaction=True)
def test_concurrent_credit_notes_never_credit_a_line_twice(org):
    invoice = closed(org)
    plan = line_of(invoice, LineKind.PLAN_FEE)
    results = in_parallel(
        lambda i: credit_note_issue(
            invoice_id=invoice.pk,
            lines=[LineCredit(plan.position, usd("0.03"))],
            reason="race",
            idempotency_key=f"race-{i}",
            actor="s",
        ),
        8,
        workers=8,
    )
    issued = [r for r in results if not isinstance(r, Exception)]
    assert len(issued) == 3  # 3 x 0.03 <= 0.10 < 4 x 0.03
    assert all(isinstance(r, InvoiceConflict) for r in results if isinstance(r, Exception))
    assert sorted(r.credit_note.number for r in issued) == ["CN-2026-000001", "CN-2026-000002", "CN-2026-000003"]


@pytest.mark.django_db
def test_an_invoice_credited_in_full_before_stripe_ever_saw_it_is_settled(org):
    invoice = closed(org)
    usage = line_of(invoice, LineKind.USAGE, "gpt-4o", "output")  # 0.20, more than the 0.15 due
    issue(invoice, LineCredit(usage.position))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_grant_id, selectors.amount_due_minor(invoice=invoice)) == ("paid", None, 0)
    assert unfunded(org) == 0
