"""Billing monthly commitments: months still owed when the term ends are billed, two billing runs at once bill
each month once, and commitment months are counted in UTC whatever offset the start was given in."""

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import time_machine
from django.db import connections

from billing.ledger.models import JournalTransaction
from billing.pricing import periods, services
from billing.pricing.models import ChargeStatus, Commitment, CommitmentCharge, CounterKind, PeriodCounter
from tests.billing.pricing.conftest import at, available, fund, monthly_offer, usd

START = at("2026-01-31 12:00")  # months: Jan 31, Feb 28, Mar 31; the term ends Apr 30 12:00


def _charges(commitment) -> list[tuple[int, str]]:
    return list(
        CommitmentCharge.objects.filter(commitment=commitment)
        .order_by("month_index")
        .values_list("month_index", "status")
    )


def test_months_owed_when_the_term_ends_are_still_billed(book, org_a):
    fund(org_a, "6.60")
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=monthly_offer().pk)
    with time_machine.travel(at("2026-02-28 13:00"), tick=False):
        assert services.commitments_bill() == {"due": 1}
    # The billing task does not run again until after the term: month 1 is due, month 2 was never billed.
    with time_machine.travel(at("2026-05-02 00:00"), tick=False):
        assert services.commitments_bill() == {"due": 1}
    commitment.refresh_from_db()
    assert commitment.status == "ended"
    assert _charges(commitment) == [(0, "paid"), (1, "due"), (2, "due")]
    # Credit arrives: the ended commitment's months are collected, each once, and nothing more.
    fund(org_a, "20.00")
    with time_machine.travel(at("2026-05-03 00:00"), tick=False):
        assert services.commitments_bill() == {"billed": 1}
        assert services.commitments_bill() == {}
    assert _charges(commitment) == [(0, "paid"), (1, "paid"), (2, "paid")]
    assert available(org_a) == usd("20.00") - 2 * usd("6.60")
    # No counter was opened beyond the term.
    assert PeriodCounter.objects.filter(kind=CounterKind.COMMITMENT, owner_id=commitment.pk).count() == 2


def test_a_term_ending_with_credit_bills_every_month_before_it_ends(book, org_a):
    fund(org_a, "100.00")
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=monthly_offer().pk)
    with time_machine.travel(at("2026-06-01 00:00"), tick=False):
        assert services.commitments_bill() == {"billed": 1}
    commitment.refresh_from_db()
    assert commitment.status == "ended"
    assert _charges(commitment) == [(0, "paid"), (1, "paid"), (2, "paid")]
    assert available(org_a) == usd("100.00") - 3 * usd("6.60")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("trial", range(3))
def test_two_billing_runs_at_once_bill_each_month_once(book, org_a, trial):
    fund(org_a, "100.00")
    with time_machine.travel(START, tick=False):
        commitment = services.commitment_purchase(organization_id=org_a.pk, offer_id=monthly_offer().pk)
    now = at("2026-03-31 13:00")  # months 1 and 2 to bill
    workers = 2
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            outcomes.append(services.commitment_bill(commitment_id=commitment.pk, now=now))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(outcomes) in (["billed", "billed"], ["billed", "nothing"])
    assert _charges(commitment) == [(0, "paid"), (1, "paid"), (2, "paid")]
    assert (
        JournalTransaction.objects.filter(idempotency_key__contains=f"commitment:{commitment.pk}:month:").count() == 3
    )
    assert available(org_a) == usd("100.00") - 3 * usd("6.60")


@pytest.mark.parametrize("offset_hours", [5, -5, 14])
def test_a_start_given_with_an_offset_is_counted_in_utc(book, org_a, offset_hours):
    fund(org_a, "100.00")
    # 02:00 on Jan 31 at +05:00 is 21:00 on Jan 30 in UTC: its months end on the 30th (Feb: the 28th), in UTC.
    local = datetime(2026, 1, 31, 2, 0, tzinfo=timezone(timedelta(hours=offset_hours)))
    with time_machine.travel(local - timedelta(minutes=1), tick=False):
        commitment = services.commitment_purchase(
            organization_id=org_a.pk, offer_id=monthly_offer().pk, starts_at=local
        )
    commitment = Commitment.objects.get(pk=commitment.pk)
    utc_start = local.astimezone(UTC)
    assert commitment.starts_at == utc_start
    assert commitment.ends_at == periods.add_months(utc_start, 3)
    for month in (1, 2):
        with time_machine.travel(periods.add_months(utc_start, month) + timedelta(hours=1), tick=False):
            services.commitments_bill()
    months = list(
        PeriodCounter.objects.filter(kind=CounterKind.COMMITMENT, owner_id=commitment.pk)
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    # The months follow each other without gap or overlap, and the charges cover the same months.
    assert [start for start, _ in months] == [periods.add_months(utc_start, n) for n in range(3)]
    assert all(months[n][1] == months[n + 1][0] for n in range(2))
    assert months[-1][1] == commitment.ends_at
    charged = CommitmentCharge.objects.filter(commitment=commitment).order_by("month_index")
    assert [(c.period_start, c.period_end) for c in charged] == months
    assert all(c.status == ChargeStatus.PAID for c in charged)
