"""Tier schedules with the database: scheduling rules, real-time marginal charges, and the period-end true-up."""

import pytest
import time_machine
from django.db import transaction

from billing.ledger.models import Grant
from billing.pricing import rating, selectors, services, tiers
from billing.pricing.errors import PriceVersionLocked, PricingConflict
from billing.pricing.models import CounterKind, PeriodCounter, TierTrueUp
from core.errors import ApplicationError
from tests.billing.pricing.conftest import at, available, fund, usd

NOW = at("2026-02-20 00:00")
MARCH = at("2026-03-01 00:00")
APRIL = at("2026-04-01 00:00")
# $1 of list-price volume at list, the next $9 at 80 %, beyond $10 at 50 %.
BANDS = [(0, 10_000), (usd("1.00"), 8_000), (usd("10.00"), 5_000)]


def _schedule(mode: str, **options):
    values = {"name": "llama", "mode": mode, "group": "open-weight", "tiers": BANDS, "effective_from": MARCH} | options
    return services.tier_schedule_create(now=NOW, **values)


def test_schedules_start_at_a_coming_month_and_never_overlap(book, staff):
    with pytest.raises(ApplicationError, match="first instant of a month"):
        _schedule("graduated", effective_from=at("2026-03-02 00:00"))
    with pytest.raises(ApplicationError, match="has not begun"):
        _schedule("graduated", effective_from=at("2026-02-01 00:00"))
    with pytest.raises(ApplicationError, match="in order"):
        _schedule("graduated", tiers=[(0, 10_000), (5, 9_000), (5, 8_000)])
    with pytest.raises(ApplicationError, match="cannot cost more"):
        _schedule("graduated", tiers=[(0, 9_000), (5, 9_500)])
    schedule = _schedule("graduated", actor=staff)
    with pytest.raises(PricingConflict, match="Another tier schedule"):
        _schedule("volume", effective_from=APRIL)
    # Before it starts it can change; once in effect its tiers cannot, but it can end at a later month.
    services.tier_schedule_update(schedule_id=schedule.pk, mode="volume", now=NOW)
    with pytest.raises(PriceVersionLocked):
        services.tier_schedule_update(schedule_id=schedule.pk, tiers=[(0, 5_000)], now=at("2026-03-05 00:00"))
    services.tier_schedule_update(schedule_id=schedule.pk, effective_until=APRIL, now=at("2026-03-05 00:00"))
    _schedule("graduated", effective_from=APRIL)


def test_an_unknown_mode_or_new_tiers_are_checked_on_update_as_on_create(book):
    with pytest.raises(ApplicationError, match="graduated or volume"):
        _schedule("flat")
    schedule = _schedule("graduated")
    with pytest.raises(ApplicationError, match="graduated or volume"):
        services.tier_schedule_update(schedule_id=schedule.pk, mode="flat", now=NOW)
    with pytest.raises(ApplicationError, match="cannot cost more"):
        services.tier_schedule_update(schedule_id=schedule.pk, tiers=[(0, 9_000), (5, 9_500)], now=NOW)
    services.tier_schedule_update(schedule_id=schedule.pk, tiers=[(0, 10_000), (usd("2.00"), 7_000)], now=NOW)
    schedule.refresh_from_db()
    assert (schedule.mode, [(b.start_nano, b.factor_bps) for b in schedule.bands.all()]) == (
        "graduated",
        [(0, 10_000), (usd("2.00"), 7_000)],
    )


def _rate(org, tokens: int, when):
    with transaction.atomic():
        return services.usage_rate(organization_id=org.pk, usage=rating.Usage("llama-3.1-8b-instruct", tokens), at=when)


@pytest.mark.parametrize("mode", ["graduated", "volume"])
def test_period_total_is_exactly_f_of_the_volume_after_true_up(book, org_a, mode):
    schedule = _schedule(mode)
    fund(org_a, "100.00")
    # llama 8B is $0.18/M: 50M tokens = $9.00 of list-price volume, in three requests.
    ratings = [_rate(org_a, n, at("2026-03-10 00:00")) for n in (5_000_000, 20_000_000, 25_000_000)]
    volume = usd("9.00")
    bands = tuple(tiers.Tier(s, f) for s, f in BANDS)
    graduated = tiers.graduated_cost_nano(volume, bands)  # 1 + 8 x 0.8 = $7.40
    assert graduated == usd("7.40")
    assert sum(r.credit_nano for r in ratings) == graduated
    # First request ($0.90): all list. Second ($3.60): $0.10 at list + $3.50 at 80 % = $2.90.
    assert [r.credit_nano for r in ratings] == [usd("0.90"), usd("2.90"), usd("3.60")]
    counter = PeriodCounter.objects.get(kind=CounterKind.TIER, organization=org_a)
    assert (counter.volume_nano, counter.period_start, counter.period_end) == (volume, MARCH, APRIL)
    # A late request of the period settles after the true-up: the next run trues up the difference.
    with time_machine.travel(at("2026-04-01 00:20"), tick=False):
        services.periods_close()
    late = _rate(org_a, 10_000_000, at("2026-03-31 23:59"))  # $1.80 more volume
    with time_machine.travel(at("2026-04-01 00:40"), tick=False):
        services.periods_close()
        services.periods_close()  # idempotent
    volume += usd("1.80")
    trueups = list(TierTrueUp.objects.filter(counter=counter).order_by("id"))
    charged = sum(r.credit_nano for r in ratings) + late.credit_nano
    assert charged + sum(t.amount_nano for t in trueups) == tiers.period_cost_nano(volume, bands, mode)
    if mode == "graduated":
        assert trueups == []
    else:
        # Volume pricing: the whole $10.80 at 50 % = $5.40; real time charged 1 + 9 x 0.8 + 0.8 x 0.5 = $8.60.
        assert tiers.period_cost_nano(volume, bands, mode) == usd("5.40")
        # At the first run ($9.00): all at 80 % = $7.20 against $7.40 charged: -$0.20. After the late request:
        # -$3.20 in all, so -$3.00 more.
        assert [t.amount_nano for t in trueups] == [-usd("0.20"), -usd("3.00")]
        grants = Grant.objects.filter(kind="refund", source_ref=f"tier_schedule:{schedule.pk}")
        assert sum(g.amount_nano for g in grants) == usd("3.20")
        # (Rating itself moves no credit; the caller's settle does. The true-up's credit lands in the wallet.)
        assert available(org_a) == usd("103.20")


def test_the_context_carries_the_schedule_of_the_month(book, org_a):
    _schedule("graduated")
    assert (
        selectors.pricing_context_get(organization_id=org_a.pk, model_slug="llama-3.1-8b-instruct", at=NOW).tier is None
    )
    ctx = selectors.pricing_context_get(organization_id=org_a.pk, model_slug="llama-3.1-70b-instruct", at=MARCH)
    assert ctx.tier is not None and (ctx.tier.period_start, ctx.tier.period_end) == (MARCH, APRIL)
    assert ctx.needs_period_state
