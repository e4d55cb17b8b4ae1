"""Three months of one organization, and the two after, time moved by hand (Python's clock with time_machine, the
database's with booked_at): pay-as-you-go usage, a plan bought and changed mid-period, tokens covered by the plan's
quota, a reserved commitment paid monthly and left unused (use-or-lose), a volume-tier schedule trued up, an
overdraft used and repaid by the invoices' payments, a renewal fee credit could not pay (invoiced, then paid by the
invoice's payment), late usage, rounding carried, and numbering per year. Each invoice's lines and totals are checked
against numbers worked out by hand below, and (by the autouse reconcile) against the ledger."""

import pytest
import time_machine

from billing.invoicing import selectors, services
from billing.invoicing.services.collection import invoice_paid
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from billing.pricing import services as pricing
from billing.pricing.services import AllowanceSpec
from tests.billing.invoicing.conftest import at, booked_at, call, fund, usd
from tests.billing.pricing.conftest import monthly_offer

pytestmark = pytest.mark.django_db


class moment:
    """Python's clock and the database's, both at `text`."""

    def __init__(self, text: str):
        self.travel = time_machine.travel(at(text), tick=False)
        self.booked = booked_at(at(text))

    def __enter__(self) -> None:
        self.travel.__enter__()
        self.booked.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.booked.__exit__(*exc)
        self.travel.__exit__(*exc)


def lines(invoice) -> list[tuple[str, str, int, int]]:
    return [
        (line.kind, line.model.slug if line.model else line.description, line.quantity, line.amount_nano)
        for line in selectors.invoice_lines(invoice_id=invoice.pk)
    ]


def close(org, month_end: str):
    with time_machine.travel(at(month_end), tick=False):
        return services.invoices_close_due(organization_ids=[org.pk])


def test_three_months_of_one_organization(org):
    # Plans: Starter 31.00 a month; Pro 62.00 a month with 1,000,000 gpt-4o-mini tokens included (31-day October:
    # a change on the 16th at 00:00 prorates by 16/31, which these fees divide exactly).
    pricing.plan_create(slug="starter", name="Starter", fee_nano=usd("31.00"))
    pricing.plan_create(
        slug="pro",
        name="Pro",
        fee_nano=usd("62.00"),
        allowances=[AllowanceSpec(included_tokens=1_000_000, model="gpt-4o-mini")],
    )
    offer = monthly_offer()  # 10M llama-3.1-70b tokens a month at 0.88 per 1M, 25% off: 6.60 a month
    # Volume tiers on Llama 8B from December: the period's whole volume at 80% once it passes 1.00 at list price.
    pricing.tier_schedule_create(
        name="llama 8B",
        mode="volume",
        model="llama-3.1-8b-instruct",
        tiers=[(0, 10_000), (usd("1.00"), 8_000)],
        effective_from=at("2026-12-01 00:00"),
        now=at("2026-10-01 00:00"),
    )

    # --- October -------------------------------------------------------------------------------------------
    with moment("2026-10-01 00:00"):
        fund(org, "40.00", kind="promotional")
        ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=usd("200.00"), actor="test")
        subscription = pricing.subscription_create(organization_id=org.pk, plan_slug="starter")  # 31.00
    with moment("2026-10-05 12:00"):
        for _ in range(2):  # 100,000 x 2.50 + 10,000 x 10.00 per 1M: 0.35 each
            call(org, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)
    with moment("2026-10-16 00:00"):
        # Upgrade: 62.00 x 16/31 = 32.00 for the rest of October, less 31.00 x 16/31 = 16.00 unused: 16.00.
        pricing.subscription_change(subscription_id=subscription.pk, plan_slug="pro")
    with moment("2026-10-17 09:00"):
        call(org, model="gpt-4o-mini", input_tokens=50_000, output_tokens=0)  # covered by Pro's tokens
    with moment("2026-10-20 00:00"):
        pricing.commitment_purchase(organization_id=org.pk, offer_id=offer.pk)  # month 0: 6.60
    with moment("2026-11-01 00:00"):
        pricing.subscriptions_renew()  # Pro for November: 62.00
    with moment("2026-11-01 00:20"):  # inside October's grace window, but booked in November
        call(org, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # 0.35

    [october] = close(org, "2026-11-01 01:00")
    # Charges 31.00 + 0.70 + 16.00 + 0 + 6.60 = 54.30; the 40.00 promotional credit paid first; 14.30 owed.
    # Charges 31.00 + 0.70 + 16.00 + 0 (quota) + 6.60 = 54.30; the 40.00 promotional credit paid first; 14.30 owed.
    assert lines(october) == [
        ("usage", "gpt-4o-mini", 50_000, 0),
        ("usage", "gpt-4o", 200_000, usd("0.50")),
        ("usage", "gpt-4o", 20_000, usd("0.20")),
        ("plan_fee", "Starter plan, 2026-10-01 to 2026-11-01", 1, usd("31.00")),
        ("plan_fee", "plan change starter -> pro on 2026-10-16 00:00 UTC", 1, usd("16.00")),
        ("commitment_fee", lines(october)[5][1], 1, usd("6.60")),
        ("credit_promotional", "Promotional credit applied", 1, -usd("40.00")),
    ]
    assert lines(october)[5][1].startswith("reserved commitment") and "2026-10-20 to 2026-11-20" in lines(october)[5][1]
    covered = selectors.invoice_lines(invoice_id=october.pk).get(model__slug="gpt-4o-mini")
    assert (covered.source, covered.token_kind, covered.description) == (
        "quota",
        "input",
        "gpt-4o-mini default: input (covered by quota)",
    )
    assert (october.charges_nano, october.credit_applied_nano, october.total_minor, october.carry_out_nano) == (
        usd("54.30"),
        -usd("40.00"),
        1430,
        0,
    )
    assert october.number == "INV-2026-000001"
    with moment("2026-11-03 10:00"):
        invoice_paid(invoice_id=october.pk)  # the card paid 14.30: it repays the overdraft
    assert Wallet.objects.get(organization=org).unfunded_nano == usd("62.35")  # November's so far

    # --- November ------------------------------------------------------------------------------------------
    with time_machine.travel(at("2026-11-20 00:00"), tick=False), booked_at(at("2026-11-20 00:00")):
        pricing.commitments_bill()  # month 1: 6.60
    [november] = close(org, "2026-12-01 01:00")
    # 62.00 + 0.35 (the late call) + 6.60; nothing left of the credit: 68.95 owed. The commitment's first month
    # (Oct 20 to Nov 20) used none of its 10M tokens: shown, and charged nothing more (its fee paid for them).
    assert [(kind, amount) for kind, _, _, amount in lines(november)] == [
        ("usage", usd("0.25")),
        ("usage", usd("0.10")),
        ("plan_fee", usd("62.00")),
        ("commitment_fee", usd("6.60")),
        ("commitment_shortfall", 0),
    ]
    assert lines(november)[4][1:3] == (
        f"reserved commitment {offer.commitments.get().pk}, 2026-10-20 to 2026-11-20: committed tokens not used "
        "(use-or-lose; paid by its fee)",
        10_000_000,
    )
    assert (november.total_exact_nano, november.total_minor, november.number) == (usd("68.95"), 6895, "INV-2026-000002")

    # --- December ------------------------------------------------------------------------------------------
    with moment("2026-12-01 00:00"):
        pricing.subscriptions_renew()  # 62.00
    with moment("2026-12-02 08:00"):
        invoice_paid(invoice_id=november.pk)  # 68.95 repays November's debt
    with moment("2026-12-10 12:00"):
        # 60,000 x 2.50 + 40,000 cached x 1.25 + 10,000 x 10.00 per 1M = 0.15 + 0.05 + 0.10
        call(org, model="gpt-4o", input_tokens=100_000, cached_input_tokens=40_000, output_tokens=10_000)
        call(org, model="gpt-4o", input_tokens=1001, output_tokens=0)  # 0.0025025: a fraction of a cent
        # 10M x 0.18 per 1M = 1.80 at list; charged as it goes at the graduated price: 1.00 + 0.80 x 80% = 1.64.
        call(org, model="llama-3.1-8b-instruct", input_tokens=10_000_000, output_tokens=0)
    with time_machine.travel(at("2026-12-20 00:00"), tick=False), booked_at(at("2026-12-20 00:00")):
        pricing.commitments_bill()  # month 2: 6.60
    [december] = close(org, "2027-01-01 01:00")
    assert december.charges_nano == usd("62.00") + usd("6.60") + usd("0.30") + 2_502_500 + usd("1.64")
    # 70.5425025 owed: 70.54 asked for, 0.0025025 carried to January.
    assert (december.total_minor, december.carry_out_nano) == (7054, 2_502_500)
    assert december.number == "INV-2027-000001"  # numbers restart with the year of finalization
    assert Wallet.objects.get(organization=org).unfunded_nano == december.total_exact_nano
    assert lines(december)[-1][0::2] == ("commitment_shortfall", 10_000_000)  # month 1, Nov 20 to Dec 20

    # --- January: the renewal fee credit cannot pay goes on the invoice --------------------------------------
    with moment("2027-01-01 00:00"):
        invoice_paid(invoice_id=december.pk)  # 70.54: 0.0025025 is still owed
        # Staff withdraw postpaid use (the limit down to what is owed): the renewal finds no credit.
        ledger.wallet_overdraft_set(organization_id=org.pk, overdraft_limit_nano=2_502_500, actor="test")
        assert pricing.subscriptions_renew() == {"past_due": 1}
    with moment("2027-01-02 00:00"):
        # December's volume re-priced: 1.80 x 80% = 1.44 for the period, 0.20 less than charged, returned as
        # refund credit (which first repays the 0.0025025 owed).
        assert pricing.periods_close()["tier_trueups"] == 1
    [january] = close(org, "2027-02-01 01:00")
    subscription.refresh_from_db()
    assert subscription.status == "active"  # renewed by the close, its fee on the invoice: Pro stays in force
    # 62.00 invoiced + 0.0025025 carried in: 62.00 asked for, 0.0025025 carried on. The true-up credit and the
    # commitment's last month (Dec 20 to Jan 20, unused) are shown for the record, outside the total.
    assert lines(january) == [
        ("plan_fee", "Pro plan, 2027-01-01 to 2027-02-01", 1, usd("62.00")),
        (
            "tier_trueup_credit",
            "volume volume tiers on model llama-3.1-8b-instruct, 2026-12: period true-up",
            1,
            -usd("0.20"),
        ),
        (
            "commitment_shortfall",
            f"reserved commitment {offer.commitments.get().pk}, 2026-12-20 to 2027-01-20: committed tokens not used "
            "(use-or-lose; paid by its fee)",
            10_000_000,
            0,
        ),
        ("carry", "Rounding carried from INV-2027-000001", 1, 2_502_500),
    ]
    assert (january.charges_nano, january.credit_applied_nano, january.total_minor, january.carry_out_nano) == (
        usd("62.00"),
        0,
        6200,
        2_502_500,
    )
    fee_line = selectors.invoice_lines(invoice_id=january.pk).get(kind="plan_fee")
    assert (fee_line.period_start, fee_line.period_end, fee_line.source) == (
        at("2027-01-01 00:00"),
        at("2027-02-01 00:00"),
        "invoice",
    )
    period = subscription.periods.get(period_start=at("2027-01-01 00:00"))
    assert (period.fee_nano, period.debit_transaction_id) == (usd("62.00"), None)  # owed: the invoice collects it
    with moment("2027-02-02 09:00"):
        invoice_paid(invoice_id=january.pk)  # 62.00 by card: it pays the fee, with the debit credit would have made
    period.refresh_from_db()
    assert period.debit_transaction_id is not None
    wallet = Wallet.objects.get(organization=org)
    # 0.20 true-up - 0.0025025 repaid + 62.00 paid - 62.00 fee: the true-up credit is what is left.
    assert (wallet.available_nano, wallet.unfunded_nano) == (usd("0.20") - 2_502_500, 0)

    # --- February: the fee's debit, booked now, belongs to January's invoice and is not billed again ----------
    [february] = close(org, "2027-03-01 01:00")
    assert lines(february) == [("carry", "Rounding carried from INV-2027-000002", 1, 2_502_500)]
    assert (february.charges_nano, february.total_minor) == (0, 0)
