"""The leaderboard page's quality-against-cost fronts, drawn as inline SVG.

For each task and cost axis, :func:`front_svg` draws the chart that
:func:`ravlm_bench.api.front_chart` computes (the same points, Pareto staircase and sweeps
the PNG/SVG ``fronts`` publisher draws with matplotlib): each point with its 95% interval
and a ``<title>`` tooltip, filled when on the front; the front as a red staircase; each sweep
as a dashed green line with its values beside the points. Labels go where they overlap no
other (:class:`LabelPlacer`). :func:`fronts_section` puts a task's charts side by side.
"""

from __future__ import annotations

import math

from ravlm_bench.api import format_cost
from ravlm_plugins.publishers._markup import esc, finite

W, H, LEFT, RIGHT, TOP, BOTTOM = 320, 220, 46, 12, 12, 38


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        ticks = [10.0 ** e for e in range(first, last + 1) if low <= 10.0 ** e <= high]
        if len(ticks) >= 3:
            return ticks
        # too few decades inside: four ticks evenly spaced on the log scale
        return [low * (high / low) ** (i / 3) for i in range(4)]
    if high == low:
        return [low]
    return [low + (high - low) * i / 3 for i in range(4)]


def _short(value: float, column: str = "") -> str:
    if column == "index_memory_bytes":
        return format_cost(column, value)
    for limit, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{unit}"
    return f"{value:.3g}"


class LabelPlacer:
    """Places point labels in a front's SVG where they overlap no label placed before: the
    first free slot of a few above or below the point, else none (the point's tooltip and
    the caption still name it)."""

    def __init__(self):
        self.boxes: list[tuple[float, float, float, float]] = []

    def place(self, px: float, py: float, text: str, attrs: str, *, above: bool) -> str:
        width, height = 4.6 * len(text) + 2, 9.0
        right = px > W * 0.6  # labels on the right half read leftwards, inside the plot
        left_edge = px - 5 - width if right else px + 5
        offsets = (-5, -15, 13, 23, -25) if above else (13, 23, -5, -15, 33)
        for dy in offsets:
            box = (left_edge, py + dy - height + 2, left_edge + width, py + dy + 2)
            inside = box[1] >= TOP and box[3] <= H - BOTTOM
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3]
                                  and b[1] < box[3] for b in self.boxes):
                self.boxes.append(box)
                anchor = "end" if right else "start"
                return (f'<text x="{px + (-5 if right else 5):.1f}" y="{py + dy:.1f}" '
                        f'font-size="8" text-anchor="{anchor}" {attrs}>{esc(text)}</text>')
        return ""


class _Frame:
    """Where a chart's costs and qualities land in the SVG: the points' range, padded (the
    costs on a log scale when the chart says so)."""

    def __init__(self, chart):
        costs = [p.cost for p in chart.points]
        qualities = [v for p in chart.points for v in (p.quality, p.quality_lo, p.quality_hi)
                     if finite(v)]
        self.log = chart.log_scale
        x_lo, x_hi = min(costs), max(costs)
        if self.log:
            x_lo, x_hi = math.log10(x_lo) - 0.1, math.log10(x_hi) + 0.1
        else:
            pad = (x_hi - x_lo) * 0.08 or abs(x_hi) * 0.1 or 1.0
            x_lo, x_hi = x_lo - pad, x_hi + pad
        self.x_lo, self.x_hi = x_lo, x_hi
        self.y_pad = (max(qualities) - min(qualities)) * 0.1 or 0.05
        self.y_lo, self.y_hi = min(qualities) - self.y_pad, max(qualities) + self.y_pad
        # the ticks span the padded range on a log scale, the costs themselves otherwise
        self.tick_range = (10 ** x_lo, 10 ** x_hi) if self.log else (min(costs), max(costs))

    def x(self, cost: float) -> float:
        v = math.log10(cost) if self.log else cost
        return LEFT + (W - LEFT - RIGHT) * (v - self.x_lo) / (self.x_hi - self.x_lo)

    def y(self, quality: float) -> float:
        return H - BOTTOM - (H - TOP - BOTTOM) * (quality - self.y_lo) / (self.y_hi - self.y_lo)


def front_svg(board, task: str, axis) -> str:
    """``task``'s front against ``axis`` as an inline SVG figure with its caption ("" when
    no system has a point on it); ``{id}`` in it is replaced by the caller."""
    from ravlm_bench.api import front_chart

    chart = front_chart(board, task, axis.column)
    if chart is None:
        return ""
    frame, labels = _Frame(chart), LabelPlacer()
    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="{{id}}-t">',
             f'<title id="{{id}}-t">{esc(task)}: {esc(chart.metric)} against '
             f"{esc(axis.label)}</title>",
             f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
             f'height="{H - TOP - BOTTOM}" fill="#fafafa" stroke="#bbb"/>',
             *_axes_text(chart, frame)]
    steps = chart.front_steps()
    if len(steps) > 1:
        path = "".join(f"{'L' if i else 'M'}{frame.x(cost):.1f},{frame.y(quality):.1f}"
                       for i, (cost, quality) in enumerate(steps))
        parts.append(f'<path class="front-line" d="{path}" fill="none" '
                     f'stroke="#c44e52" stroke-width="1.2" opacity=".7"/>')
    parts += _sweeps_svg(chart, frame, labels)
    parts += [_point_svg(chart, frame, p, labels) for p in chart.points]
    parts.append("</svg>")
    on_front = ", ".join(p.system for p in chart.front)
    others = ", ".join(p.system for p in chart.dominated) or "none"
    caption = (f"{esc(axis.label)}: on the front (filled) {esc(on_front)}; "
               f"dominated: {esc(others)}")
    return f"<figure>{''.join(parts)}<figcaption>{caption}</figcaption></figure>"


def _axes_text(chart, frame: _Frame) -> list[str]:
    """The cost ticks, the quality ticks and the cost axis's label."""
    parts = []
    ticks = _ticks(*frame.tick_range, frame.log)
    for number, tick in enumerate(ticks):
        # the outer ticks read inwards so that their text stays inside the figure
        anchor = "start" if number == 0 and len(ticks) > 1 else \
            "end" if number == len(ticks) - 1 and len(ticks) > 1 else "middle"
        parts.append(f'<text x="{frame.x(tick):.1f}" y="{H - BOTTOM + 12}" font-size="9" '
                     f'text-anchor="{anchor}">{_short(tick, chart.axis.column)}</text>')
    for i in range(4):
        q = frame.y_lo + frame.y_pad + (frame.y_hi - frame.y_lo - 2 * frame.y_pad) * i / 3
        parts.append(f'<text x="{LEFT - 4}" y="{frame.y(q) + 3:.1f}" font-size="9" '
                     f'text-anchor="end">{q:.3f}</text>')
    direction = "higher" if chart.axis.higher_is_better else "lower"
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" font-size="10" '
                 f'text-anchor="middle">{esc(chart.axis.label)}'
                 f'{" (log)" if frame.log else ""}, {direction} is better</text>')
    return parts


def _sweeps_svg(chart, frame: _Frame, labels: LabelPlacer) -> list[str]:
    """Each sweep as a dashed line, named at its first point, its values beside each."""
    parts = []
    for series in chart.sweeps:
        coords = " ".join(f"{frame.x(p.cost):.1f},{frame.y(p.quality):.1f}"
                          for p in series.points)
        parts.append(f'<polyline class="sweep" data-base="{esc(series.base)}" '
                     f'points="{coords}" fill="none" stroke="#55a868" stroke-dasharray="4 2"'
                     f'><title>sweep of {esc(series.base)}</title></polyline>')
        first = series.points[0]
        parts.append(labels.place(frame.x(first.cost), frame.y(first.quality),
                                  f"{series.base} sweep", 'fill="#2f6f3e" font-style="italic"',
                                  above=True))
        for p in series.points:
            parts.append(labels.place(frame.x(p.cost), frame.y(p.quality), p.sweep_value,
                                      'fill="#2f6f3e"', above=False))
    return parts


def _point_svg(chart, frame: _Frame, p, labels: LabelPlacer) -> str:
    """A point with its interval and tooltip, filled on the front, named there unless it
    belongs to a sweep (whose values it carries)."""
    x, y = frame.x(p.cost), frame.y(p.quality)
    colour = "#c44e52" if p.on_front else "#4c72b0"
    interval = (f" [{p.quality_lo:.3f}, {p.quality_hi:.3f}]"
                if finite(p.quality_lo) and finite(p.quality_hi) else "")
    tip = (f"{p.system}: {chart.metric} {p.quality:.3f}{interval}; {chart.axis.column} "
           f"{format_cost(chart.axis.column, p.cost)}"
           + ("; on the Pareto front" if p.on_front else ""))
    group = [f'<g class="point{" on-front" if p.on_front else ""}" '
             f'data-system="{esc(p.system)}"><title>{esc(tip)}</title>']
    if interval:
        group.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(p.quality_lo):.1f}" '
                     f'y2="{frame.y(p.quality_hi):.1f}" stroke="{colour}"/>')
    group.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" '
                 f'fill="{colour if p.on_front else "#fff"}" stroke="{colour}" '
                 f'stroke-width="1.5"/>')
    if p.on_front and p.sweep_base is None:
        group.append(labels.place(x, y, p.system, "", above=True))
    group.append("</g>")
    return "".join(group)


def fronts_section(board, task: str) -> str:
    from ravlm_bench.api import COST_AXES

    figures = []
    for number, axis in enumerate(COST_AXES):
        figure = front_svg(board, task, axis)
        if figure:
            figures.append(figure.replace("{id}", esc(f"front-{task}-{number}")))
    if not figures:
        return '<p class="note">No retrieval costs recorded: no quality-against-cost front.</p>'
    return ('<p class="note">Quality against cost: filled points are on the Pareto front '
            "(nothing else is at least as good on both and better on one), joined by the "
            "red step line; dashed green lines join a sweep's variants. Hover a point for "
            f'its numbers.</p><div class="fronts">{"".join(figures)}</div>')
