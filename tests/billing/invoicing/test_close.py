"""Closing a period into an invoice: lines aggregated from the ledger and usage, credit applied by kind, rounding
with carry, gapless numbers, immutability once finalized, and a close stopped at every step resumed to the same
invoice."""

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction

from billing.invoicing import selectors, services
from billing.invoicing.errors import InvoiceConflict
from billing.invoicing.models import Invoice, InvoiceLine, InvoiceStatus
from billing.invoicing.selectors import lines_traced
from billing.invoicing.services import close
from billing.ledger import services as ledger
from billing.pricing import services as pricing
from tests.accounts.factories import OrganizationFactory
from tests.billing.invoicing.conftest import at, booked_at, call, fund, usd

OCT = at("2026-10-01 00:00")
NOV = at("2026-11-01 00:00")
DEC = at("2026-12-01 00:00")


def october(org):
    """Two gpt-4o calls and a gpt-4o-mini call, a plan fee, promotional then paid credit and an overdraft, all
    booked in October 2026.

    By hand (gpt-4o: input 2.50, cached input 1.25, output 10.00 per million tokens; gpt-4o-mini 0.15 / 0.60):
    a gpt-4o call of 100,000 input tokens (20,000 cached) and 10,000 output costs 80,000 x 2.5 = 0.20,
    20,000 x 1.25 = 0.025 and 10,000 x 10 = 0.10 (0.325); the gpt-4o-mini call of 1,000 + 500 tokens costs
    0.00015 + 0.0003 = 0.00045. Charges: 0.65 + 0.00045 + the 0.10 plan fee = 0.75045. Credit: 0.10 promotional
    and 0.50 paid; the overdraft covers the rest, 0.15045: the invoice asks for 0.15 and carries 0.00045.
    """
    with booked_at(at("2026-10-05 09:00")):
        fund(org, "0.10", kind="promotional")
        fund(org, "0.50")
        ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("5.00"), actor="test")
        for _ in range(2):
            call(org, model="gpt-4o", input_tokens=100_000, cached_input_tokens=20_000, output_tokens=10_000)
        call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=500)
        ledger.wallet_debit(
            organization_id=org.pk,
            amount_nano=usd("0.10"),
            idempotency_key=f"plan-fee-{org.pk}",
            actor="test",
            reason="Starter plan, October",
            category="plan_fee",
        )


def lines_by(invoice):
    return {
        (line.model.slug if line.model else line.kind, line.token_kind): (line.quantity, line.amount_nano)
        for line in selectors.invoice_lines(invoice_id=invoice.pk)
    }


def test_a_period_closes_into_lines_that_add_up_by_hand(org):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert (invoice.status, invoice.number, invoice.period_end) == (InvoiceStatus.FINALIZED, "INV-2026-000001", NOV)
    assert lines_by(invoice) == {
        ("gpt-4o", "input"): (160_000, usd("0.40")),
        ("gpt-4o", "cached_input"): (40_000, usd("0.05")),
        ("gpt-4o", "output"): (20_000, usd("0.20")),
        ("gpt-4o-mini", "input"): (1000, usd("0.00015")),
        ("gpt-4o-mini", "output"): (500, usd("0.0003")),
        ("plan_fee", ""): (1, usd("0.10")),
        ("credit_promotional", ""): (1, -usd("0.10")),
        ("credit_paid", ""): (1, -usd("0.50")),
    }
    assert invoice.charges_nano == usd("0.75045")
    assert invoice.credit_applied_nano == -usd("0.60")
    assert (invoice.total_exact_nano, invoice.total_minor, invoice.carry_out_nano) == (usd("0.15045"), 15, 450_000)
    fee = InvoiceLine.objects.get(invoice=invoice, kind="plan_fee")
    assert fee.description == "Starter plan, October"


def test_reasoning_tokens_get_an_invoice_line_of_their_own(org):
    with booked_at(at("2026-10-05 09:00")):
        fund(org, "1.00")
        # gpt-4o has no reasoning price: reasoning at the output price (10.00 per million), on a line of its own.
        call(org, model="gpt-4o", input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_000)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    lines = lines_by(invoice)
    assert lines[("gpt-4o", "output")] == (1_000, usd("0.01"))
    assert lines[("gpt-4o", "reasoning")] == (4_000, usd("0.04"))
    line = InvoiceLine.objects.get(invoice=invoice, token_kind="reasoning")
    assert line.description.endswith(": reasoning")


def test_the_rounding_is_carried_to_the_next_invoice(org):
    october(org)
    with booked_at(at("2026-11-10 12:00")):
        call(org, model="gpt-4o-mini", input_tokens=10_000, output_tokens=5_000)  # 0.0015 + 0.003, unfunded
    with time_machine.travel(at("2026-12-01 01:00:01")):
        first = services.invoice_close(organization_id=org.pk, period_start=OCT)
        second = services.invoice_close(organization_id=org.pk, period_start=NOV)
    # 0.0045 + the 0.00045 carried = 0.00495: 0 cents, carrying 0.00495 on.
    assert (second.carry_in_nano, second.total_exact_nano) == (first.carry_out_nano, usd("0.00495"))
    assert (second.total_minor, second.carry_out_nano) == (0, usd("0.00495"))
    carry = InvoiceLine.objects.get(invoice=second, kind="carry")
    assert (carry.amount_nano, carry.description) == (450_000, "Rounding carried from INV-2026-000001")
    assert second.number == "INV-2026-000002"


@pytest.mark.parametrize(
    ("exact", "minor", "carry"),
    [
        (0, 0, 0),
        (4_999_999, 0, 4_999_999),
        (5_000_000, 1, -5_000_000),
        (-5_000_000, 0, -5_000_000),
        (15_045 * 10**4, 15, 450_000),
    ],
)
def test_rounding_is_half_up_once_with_the_difference_carried(exact, minor, carry):
    assert services.minor_round(exact) == (minor, carry)


def test_usage_booked_after_the_period_ends_lands_on_the_next_invoice(org):
    october(org)
    with booked_at(at("2026-11-01 00:30")):  # inside October's grace window, but booked in November
        late = call(org, model="gpt-4o-mini", input_tokens=1000, output_tokens=0)
    with time_machine.travel(at("2026-12-01 01:00:01")):
        first = services.invoice_close(organization_id=org.pk, period_start=OCT)
        second = services.invoice_close(organization_id=org.pk, period_start=NOV)
    assert all(late.pk not in line.traced_usage_ids for line in lines_traced(first.lines.all()))
    assert [line.traced_usage_ids for line in lines_traced(second.lines.filter(kind="usage"))] == [[late.pk]]


def test_a_period_that_has_not_ended_with_its_grace_is_not_closed(org, settings):
    october(org)
    settings.INVOICE_CLOSE_GRACE_SECONDS = 3600
    with time_machine.travel(at("2026-11-01 00:59:59")), pytest.raises(InvoiceConflict, match="has not ended"):
        services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert not Invoice.objects.exists()


def test_periods_close_in_order(org):
    october(org)
    with time_machine.travel(at("2026-12-01 01:00:01")), pytest.raises(InvoiceConflict, match="2026-10-01"):
        services.invoice_close(organization_id=org.pk, period_start=NOV)


def test_an_anniversary_day_sets_the_period(org):
    from billing.invoicing.models import BillingProfile

    BillingProfile.objects.create(organization=org, anchor_day=15)
    with booked_at(at("2026-10-20 10:00")):
        fund(org, "1.00")
        call(org)
    with time_machine.travel(at("2026-11-15 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=at("2026-10-15 00:00"))
    assert invoice.period_end == at("2026-11-15 00:00")
    assert invoice.charges_nano == usd("0.00045")


def _crash_after(step_index, monkeypatch):
    real = close.CLOSE_STEPS

    def crashing(step):
        def run(*, invoice_id):
            step(invoice_id=invoice_id)
            raise RuntimeError("worker killed")

        return run

    steps = tuple(crashing(step) if i == step_index else step for i, step in enumerate(real))
    monkeypatch.setattr(close, "CLOSE_STEPS", steps)


@pytest.mark.parametrize(
    "crash", ["after_open", "inside_aggregate", "after_aggregate", "inside_finalize", "after_finalize"]
)
def test_a_close_stopped_at_any_step_resumes_to_the_same_invoice(org, monkeypatch, crash):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        with monkeypatch.context() as patch, pytest.raises((RuntimeError, DatabaseError)):
            if crash == "after_open":
                patch.setattr(
                    close, "CLOSE_STEPS", (lambda *, invoice_id: (_ for _ in ()).throw(RuntimeError("killed")),)
                )
            elif crash == "inside_aggregate":  # the lines are written, then the transaction dies before its commit
                patch.setattr(close, "fees_invoice", lambda **_: (_ for _ in ()).throw(DatabaseError("killed")))
            elif crash == "inside_finalize":  # the number is taken, then the transaction dies
                patch.setattr(
                    close.InvoiceSequence, "save", lambda *a, **k: (_ for _ in ()).throw(DatabaseError("killed"))
                )
            else:
                _crash_after(0 if crash == "after_aggregate" else 1, patch)
            with transaction.atomic():  # what the dead worker had committed stays (a savepoint here)
                services.invoice_close(organization_id=org.pk, period_start=OCT)
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
        again = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert Invoice.objects.count() == 1
    assert again.pk == invoice.pk
    assert (invoice.status, invoice.number, invoice.total_minor) == ("finalized", "INV-2026-000001", 15)
    assert InvoiceLine.objects.filter(invoice=invoice).count() == 8
    assert invoice.charges_nano == usd("0.75045")


def test_numbers_are_gapless_per_issuer_and_year(book, settings):
    organizations = [OrganizationFactory(name=f"Org {i}") for i in range(3)]
    with booked_at(at("2026-10-02 00:00")):
        for organization in organizations:
            ledger.wallet_get_or_create(organization_id=organization.pk)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        numbers = [services.invoice_close(organization_id=o.pk, period_start=OCT).number for o in organizations]
        settings.INVOICE_ISSUER = "eu"
        settings.INVOICE_NUMBER_FORMAT = "EU{year}/{number}"
        other = OrganizationFactory(name="Org EU")
        with booked_at(at("2026-10-02 00:00")):
            ledger.wallet_get_or_create(organization_id=other.pk)
        eu = services.invoice_close(organization_id=other.pk, period_start=OCT)
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    assert (eu.issuer, eu.number) == ("eu", "EU2026/1")


def test_an_empty_period_is_still_invoiced(org):
    with booked_at(at("2026-10-02 00:00")):
        ledger.wallet_get_or_create(organization_id=org.pk)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert (invoice.status, invoice.total_minor, invoice.lines.count()) == ("finalized", 0, 0)


def test_a_finalized_invoice_never_changes(org):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    line = invoice.lines.first()
    edits = [
        lambda: Invoice.objects.filter(pk=invoice.pk).update(total_minor=1),
        lambda: Invoice.objects.filter(pk=invoice.pk).update(number="INV-2026-000009"),
        lambda: Invoice.objects.filter(pk=invoice.pk).update(status="draft"),
        lambda: connection.cursor().execute("DELETE FROM invoicing_invoice WHERE id = %s", [invoice.pk]),
        lambda: InvoiceLine.objects.filter(pk=line.pk).update(amount_nano=0),
        lambda: InvoiceLine.objects.filter(pk=line.pk).delete(),
        lambda: InvoiceLine.objects.create(
            invoice=invoice,
            position=99,
            kind="charge",
            description="x",
            quantity=1,
            unit="item",
            amount_nano=1,
            period_start=OCT,
            period_end=NOV,
        ),
    ]
    for edit in edits:
        with pytest.raises(DatabaseError, match="invoicing: "), transaction.atomic():
            edit()
    # Its collection state still moves forward.
    assert Invoice.objects.filter(pk=invoice.pk).update(status="paid", paid_at=NOV) == 1


def test_the_reconcile_check_finds_a_charge_on_no_invoice(org):
    october(org)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    assert selectors.invoices_reconcile(organization_id=org.pk) == []
    with booked_at(at("2026-10-20 00:00")):  # booked into the closed period behind the close's back
        stray = ledger.wallet_debit(
            organization_id=org.pk, amount_nano=7, idempotency_key="stray", actor="test", category="plan_fee"
        )
    assert selectors.invoices_reconcile(organization_id=org.pk) == [
        f"invoice {invoice.number}: charge transaction {stray.pk} of the period is on no line"
    ]
    with connection.cursor() as cursor:  # leave the books as the autouse check expects
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE ledger_journaltransaction SET created_at = %s WHERE id = %s", [DEC, stray.pk])
        cursor.execute("SET session_replication_role = origin")


def test_refunds_and_disputes_are_on_the_invoice_for_the_record_not_in_its_total(org):
    october(org)
    with booked_at(at("2026-10-25 10:00")):
        top_up = fund(org, "20.00")
        ledger.grant_reverse(
            grant_id=top_up,
            amount_nano=usd("5.00"),
            idempotency_key="top-up-1-refund-1",
            actor="staff",
            reason="Refund to card of R-1: duplicate payment",
            cash_refund=True,
        )
        ledger.grant_reverse(
            grant_id=top_up,
            amount_nano=usd("14.00"),
            idempotency_key="dispute-dp_1",
            actor="stripe",
            reason="The payment of R-1 was disputed with the card's bank.",
            cash_refund=True,
        )
    with time_machine.travel(at("2026-11-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=OCT)
    records = [
        (line.kind, line.amount_nano, line.description)
        for line in invoice.lines.filter(kind__in=["refund", "dispute"]).order_by("position")
    ]
    assert records == [
        ("refund", -usd("5.00"), "Refund to card of R-1: duplicate payment"),
        ("dispute", -usd("14.00"), "The payment of R-1 was disputed with the card's bank."),
    ]
    # The top-up repaid part of the overdraft before it went back: the charges and what they cost are unchanged.
    assert (invoice.charges_nano, invoice.total_minor) == (usd("0.75045"), 15)
    from billing.invoicing.services.stripe_push import stripe_items

    assert sum(amount for _, amount, _ in stripe_items(invoice)) == 15


def test_volume_tiers_show_as_a_usage_line_of_their_own(org):
    # Graduated: the first 1.00 of list-price volume at list, the rest at 80%.
    pricing.tier_schedule_create(
        name="llama 8B",
        mode="graduated",
        model="llama-3.1-8b-instruct",
        tiers=[(0, 10_000), (usd("1.00"), 8_000)],
        effective_from=NOV,
        now=at("2026-10-20 00:00"),
    )
    with time_machine.travel(at("2026-11-05 00:00"), tick=False), booked_at(at("2026-11-05 00:00")):
        fund(org, "5.00")
        call(org, model="llama-3.1-8b-instruct", input_tokens=10_000_000, output_tokens=0)
    with time_machine.travel(at("2026-12-01 01:00:01")):
        invoice = services.invoice_close(organization_id=org.pk, period_start=NOV)
    # 10M tokens x 0.18 per 1M = 1.80 at list; graduated: 1.00 + 0.80 x 80% = 1.64, a 0.16 volume discount.
    assert [
        (line.token_kind, line.quantity, line.unit, line.amount_nano) for line in invoice.lines.order_by("position")
    ] == [
        ("input", 10_000_000, "tokens", usd("1.80")),
        ("volume_discount", 1, "requests", -usd("0.16")),
        ("", 1, "item", -usd("1.64")),
    ]
    assert (invoice.charges_nano, invoice.total_minor) == (usd("1.64"), 0)


def test_a_batch_asks_again_only_for_organizations_that_may_have_another_period_over(book, monkeypatch):
    """Two months behind, one closes October then November; one month behind, one closes November and is not asked
    for another period (December ends after the cutoff); one whose anchor day staff moved after October closes a
    day's period, is asked again (a period may end a day after the last) and has nothing more over."""
    behind, current, moved = (OrganizationFactory(name=name) for name in ("Behind", "Current", "Moved"))
    for organization, opened in ((behind, "2026-10-02"), (current, "2026-11-02"), (moved, "2026-10-02")):
        with booked_at(at(f"{opened} 00:00")):
            ledger.wallet_get_or_create(organization_id=organization.pk)
    with time_machine.travel(at("2026-11-01 01:00:01")):
        services.invoice_close(organization_id=moved.pk, period_start=OCT)
    from billing.invoicing.models import BillingProfile

    BillingProfile.objects.create(organization=moved, anchor_day=2)  # next: November 1 to 2, then to December 2
    asked = []
    real = close.periods_next

    def periods_next(*, organization_ids):
        asked.append(set(organization_ids))
        return real(organization_ids=organization_ids)

    monkeypatch.setattr(close, "periods_next", periods_next)
    with time_machine.travel(at("2026-12-01 01:00:01")):
        closed = services.invoices_close_due(organization_ids=[behind.pk, current.pk, moved.pk])
    periods = [(invoice.organization_id, invoice.period_start, invoice.period_end) for invoice in closed]
    assert set(periods[:3]) == {(behind.pk, OCT, NOV), (current.pk, NOV, DEC), (moved.pk, NOV, at("2026-11-02 00:00"))}
    assert periods[3:] == [(behind.pk, NOV, DEC)]
    assert all(invoice.status == InvoiceStatus.FINALIZED and invoice.number for invoice in closed)
    assert asked == [{behind.pk, current.pk, moved.pk}, {behind.pk, moved.pk}]
