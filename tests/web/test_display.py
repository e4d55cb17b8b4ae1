"""How amounts and token counts read, and the server-rendered charts."""

from datetime import date

import pytest

from core.money import NANO_PER_UNIT
from web import charts, formatting


@pytest.mark.parametrize(
    ("micro", "text"), [(2_500_000, "$2.50"), (75_000, "$0.075"), (10_000_000, "$10.00"), (0, "$0.00")]
)
def test_price_per_million_tokens(micro, text):
    assert formatting.price_per_mtok(micro) == text


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (999, "999"), (1_000, "1k"), (12_345, "12.3k"), (2_500_000, "2.5M"), (10**9, "1B")]
)
def test_tokens_compact(value, text):
    assert formatting.tokens_compact(value) == text


@pytest.mark.parametrize(
    ("nano", "text"),
    [
        (0, "$0"),
        (50_000_000, "$0.05"),
        (12 * NANO_PER_UNIT, "$12"),
        (1_500 * NANO_PER_UNIT, "$1.5k"),
        (123_456, "$0.0001"),
    ],
)
def test_money_compact(nano, text):
    assert formatting.money_compact(nano) == text


@pytest.mark.parametrize(("maximum", "step"), [(0, 1), (3, 1), (4, 1), (5, 2), (9, 5), (40, 10), (41, 20), (999, 500)])
def test_nice_step_covers_the_maximum_in_four_steps(maximum, step):
    assert charts.nice_step(maximum) == step
    assert step * charts.TICKS >= maximum


def test_chart_stacks_days_with_exact_tooltips_and_folds_small_series():
    days = [date(2026, 3, 1), date(2026, 3, 2)]
    points = [charts.Point(days[0], f"m{n}", f"model-{n}", (n + 1) * 100) for n in range(10)]
    points.append(charts.Point(days[1], "m9", "model-9", 5))
    chart = charts.stacked_daily_chart(
        title="Spend <by model>", days=days, points=points, value_text=str, axis_text=str
    )
    # The largest seven keep their colour; the other three become "Other".
    assert [e.label for e in chart.legend] == [*(f"model-{n}" for n in range(9, 2, -1)), "Other"]
    assert chart.legend[-1].total == str(100 + 200 + 300)
    assert chart.total == sum((n + 1) * 100 for n in range(10)) + 5
    assert "<title>model-9 · Mar 1: 1000</title>" in chart.svg
    assert "<title>model-9 · Mar 2: 5</title>" in chart.svg
    assert 'aria-label="Spend &lt;by model&gt;"' in chart.svg
    assert not chart.empty


def test_an_empty_chart_says_so():
    chart = charts.stacked_daily_chart(title="t", days=[date(2026, 3, 1)], points=[], value_text=str, axis_text=str)
    assert chart.empty and "No usage in this period" in chart.svg and chart.legend == []


def test_labels_are_escaped():
    chart = charts.stacked_daily_chart(
        title="t",
        days=[date(2026, 3, 1)],
        points=[charts.Point(date(2026, 3, 1), "x", "<script>alert(1)</script>", 1)],
        value_text=str,
        axis_text=str,
    )
    assert "<script>" not in chart.svg and "&lt;script&gt;" in chart.svg


@pytest.mark.parametrize(
    ("nano", "currency", "text"),
    [(80, "USD", "$0.00000008"), (-350_000_000_0, "USD", "-$3.50"), (12 * NANO_PER_UNIT, "CHF", "12.00 CHF")],
)
def test_the_money_filter_is_the_one_display_rule(nano, currency, text):
    from django.template import Context, Template

    from core.money import money_display

    rendered = Template("{% load webui %}{{ nano|money:currency }}").render(
        Context({"nano": nano, "currency": currency})
    )
    assert rendered == text == money_display(nano, currency)
