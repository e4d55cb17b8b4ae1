"""Stacked bar charts of daily usage, rendered on the server as SVG (no JavaScript, nothing to download).

Coordinates are computed in floating point: they are pixels, not money. Amounts enter as exact integers and the
text shown (axis labels, tooltips) is formatted from those integers.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Distinguishable colours, readable on white, in the order series are ranked.
PALETTE = (
    "#2453c7",
    "#e07b00",
    "#0e9f6e",
    "#c0266d",
    "#7a4cd9",
    "#0891b2",
    "#a16207",
    "#475569",
)
OTHER_COLOR = "#b8c0cc"
MAX_SERIES = len(PALETTE)
OTHER_LABEL = "Other"

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 26
TICKS = 4


@dataclass(frozen=True)
class Point:
    day: date
    group: str
    label: str
    value: int


@dataclass(frozen=True)
class LegendEntry:
    label: str
    color: str
    total: str


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString
    legend: list[LegendEntry]
    total: int
    empty: bool


def nice_step(maximum: int, ticks: int = TICKS) -> int:
    """The smallest 1, 2 or 5 x 10^k step with `ticks` steps reaching `maximum` (integers only)."""
    raw = max(1, -(-maximum // ticks))
    magnitude = 10 ** (len(str(raw)) - 1)
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    raise AssertionError("unreachable")


def _ranked_series(points: Iterable[Point]) -> tuple[list[tuple[str, str]], dict[tuple[date, str], int]]:
    """Series ordered by their total (largest first), folding all but the largest into "Other"."""
    totals: dict[str, int] = {}
    labels: dict[str, str] = {}
    values: dict[tuple[date, str], int] = {}
    for point in points:
        totals[point.group] = totals.get(point.group, 0) + point.value
        labels[point.group] = point.label
        values[(point.day, point.group)] = values.get((point.day, point.group), 0) + point.value
    ranked = sorted((g for g in totals if totals[g] > 0), key=lambda g: (-totals[g], labels[g]))
    if len(ranked) <= MAX_SERIES:
        return [(g, labels[g]) for g in ranked], values
    kept, folded = ranked[: MAX_SERIES - 1], set(ranked[MAX_SERIES - 1 :])
    merged: dict[tuple[date, str], int] = {}
    for (day, group), value in values.items():
        key = (day, "\x00other" if group in folded else group)
        merged[key] = merged.get(key, 0) + value
    return [*((g, labels[g]) for g in kept), ("\x00other", OTHER_LABEL)], merged


def stacked_daily_chart(
    *,
    title: str,
    days: Sequence[date],
    points: Iterable[Point],
    value_text: Callable[[int], str],
    axis_text: Callable[[int], str],
    min_step: int = 1,
) -> Chart:
    """One bar per day, stacked by series; each segment carries a tooltip with its exact value.

    `min_step` is the finest step between two axis labels that `axis_text` can tell apart: a finer step would
    print the same label on several ticks (tiny spend all reading "$0")."""
    series, values = _ranked_series(points)
    colors = {group: (OTHER_COLOR if group == "\x00other" else PALETTE[i]) for i, (group, _) in enumerate(series)}
    day_totals = [sum(values.get((day, group), 0) for group, _ in series) for day in days]
    peak = max(day_totals, default=0)
    step = max(nice_step(peak), min_step)
    top_value = step * TICKS
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.72)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in range(TICKS + 1):
        y = TOP + plot_h - plot_h * tick / TICKS
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8ee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(axis_text(step * tick))}</text>')
    label_every = max(1, -(-len(days) // 10))
    for index, day in enumerate(days):
        x = LEFT + slot * index + (slot - bar_w) / 2
        stacked = 0
        for group, label in series:
            value = values.get((day, group), 0)
            if value <= 0:
                continue
            y_top = TOP + plot_h - plot_h * (stacked + value) / top_value
            height = plot_h * value / top_value
            stacked += value
            tooltip = f"{label} · {day:%b} {day.day}: {value_text(value)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" height="{max(height, 0.5):.1f}" '
                f'fill="{colors[group]}"><title>{escape(tooltip)}</title></rect>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{day:%b} {day.day}</text>'
            )
    if peak == 0:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" text-anchor="middle">'
            "No usage in this period</text>"
        )
    parts.append("</svg>")
    totals = {group: sum(v for (_, g), v in values.items() if g == group) for group, _ in series}
    legend = [LegendEntry(label, colors[group], value_text(totals[group])) for group, label in series]
    return Chart(
        title=title,
        svg=mark_safe("".join(parts)),  # noqa: S308  (every text inside is escaped above)
        legend=legend,
        total=sum(day_totals),
        empty=peak == 0,
    )
