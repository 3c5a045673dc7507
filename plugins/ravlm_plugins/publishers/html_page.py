"""leaderboard.html: one self-contained page (inline style and script, nothing fetched).

Per task a sortable, filterable ``<table>``: each metric as its mean with the 95% interval
drawn as a small range bar (the mean a tick in it), costs compact, the best value of each
column in bold with a visually hidden "(best)", failed cells with their error. Above each
table the task's quality-against-cost fronts as inline SVG (points carry ``<title>``
tooltips); at the end a ``<details>`` panel with the run's provenance. Sorting reads each
cell's ``data-value`` (the raw number), so "1,024" sorts as a number and missing values go
last in both directions.
"""

from __future__ import annotations

import html
import math

from ravlm_bench.api import (
    COLUMN_BETTER,
    COMPACT_HEADERS,
    COST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    ROLE_KINDS,
    format_cost,
)

CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem;
       color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .3rem; border-top: 1px solid #ccc; padding-top: 1rem; }
p.note { color: #444; max-width: 75rem; margin: .3rem 0; }
code { overflow-wrap: anywhere; }
.controls { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center;
            background: #f4f5f7; padding: .6rem .8rem; border-radius: 6px; margin: 1rem 0; }
.controls input, .controls select { font: inherit; padding: .15rem .3rem; }
.scroll { overflow-x: auto; max-width: 100%; position: relative; }  /* holds its .vh spans */
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .82rem; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; caption-side: top; }
th, td { padding: .25rem .45rem; border-bottom: 1px solid #e2e2e2; text-align: right;
         vertical-align: top; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; vertical-align: bottom; }
tbody th { text-align: left; font-weight: 600; }
th button.sort { font: inherit; font-weight: 600; background: none; border: 0; padding: 0;
                 cursor: pointer; color: inherit; text-align: inherit; }
th button.sort:focus-visible { outline: 2px solid #0b57d0; outline-offset: 2px; }
th[aria-sort="ascending"] .arrow::after { content: " \\25B2"; }
th[aria-sort="descending"] .arrow::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
td.best { background: #e8f3e8; }
td.failed, .error { color: #b00020; }
.error { white-space: normal; max-width: 28rem; font-size: .78rem; text-align: left; }
small { color: #666; }
svg.range { vertical-align: middle; margin-left: .25rem; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
      white-space: nowrap; }
.fronts { display: flex; flex-wrap: wrap; gap: .8rem; }
.fronts figure { margin: 0; flex: 1 1 300px; max-width: 430px; }
.fronts figcaption { font-size: .78rem; color: #444; }
.fronts svg { width: 100%; height: auto; }
details { margin: 2rem 0; }
details ul { margin: 0; padding-left: 1rem; }
details td { white-space: normal; text-align: left; }
"""

SCRIPT = """
(function () {
  "use strict";
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value")
                                              : cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    return raw === "" ? NaN : Number(raw);
  }
  function sortBy(button) {
    var th = button.closest("th"), table = th.closest("table");
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("thead th[aria-sort]").forEach(function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric);
      if (numeric) {
        var xn = isNaN(x), yn = isNaN(y);
        if (xn || yn) return (xn ? 1 : 0) - (yn ? 1 : 0);  // missing last, both ways
        if (x !== y) return sign * (x - y);
      } else if (x !== y) {
        return sign * (x < y ? -1 : 1);
      }
      return Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("th button.sort").forEach(function (button) {
    button.addEventListener("click", function () { sortBy(button); });
  });
  var text = document.getElementById("system-filter");
  var status = document.getElementById("status-filter");
  var summary = document.getElementById("filter-summary");
  function applyFilter() {
    var needle = text.value.trim().toLowerCase(), wanted = status.value;
    var shown = {}, all = {};
    document.querySelectorAll("tr[data-system]").forEach(function (row) {
      var name = row.getAttribute("data-system");
      var st = row.getAttribute("data-status");
      var ok = name.toLowerCase().indexOf(needle) !== -1 &&
               (wanted === "" || (wanted === "ok" ? st === "ok" : st !== "ok"));
      row.hidden = !ok;
      all[name] = true;
      if (ok) shown[name] = true;
    });
    summary.textContent = Object.keys(shown).length + " of " + Object.keys(all).length +
                          " systems shown";
  }
  text.addEventListener("input", applyFilter);
  status.addEventListener("change", applyFilter);
  applyFilter();
})();
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _raw(value) -> str:
    return repr(float(value)) if _finite(value) else ""


# ---------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------


def range_bar(mean: float, lo: float, hi: float, domain: tuple[float, float]) -> str:
    """A 56x10 inline SVG: the interval [lo, hi] as a bar, the mean as a tick, placed on
    the column's common scale ``domain``. Empty without an interval."""
    if not (_finite(lo) and _finite(hi) and _finite(mean)):
        return ""
    start, end = domain
    span = (end - start) or 1.0
    def x(v: float) -> float:
        return 2 + 52 * min(1.0, max(0.0, (v - start) / span))
    return (f'<svg class="range" width="56" height="10" viewBox="0 0 56 10" aria-hidden="true">'
            f'<line x1="2" y1="5" x2="54" y2="5" stroke="#ddd"/>'
            f'<rect x="{x(lo):.1f}" y="2.5" width="{max(1.0, x(hi) - x(lo)):.1f}" height="5" '
            f'fill="#9db4d6"/><line x1="{x(mean):.1f}" y1="0" x2="{x(mean):.1f}" y2="10" '
            f'stroke="#1d3f72" stroke-width="1.5"/></svg>')


def _domain(table, column: str, lo_col: str, hi_col: str) -> tuple[float, float]:
    values = [float(v) for c in (column, lo_col, hi_col) if c in table.columns
              for v in table[c] if _finite(v)]
    return (min(values), max(values)) if values else (0.0, 1.0)


def _best_values(table, column: str, better: str | None) -> set[float]:
    if better is None or column not in table.columns:
        return set()
    values = [float(v) for v in table[column] if _finite(v)]
    if len(values) < 2:
        return set()
    return {max(values) if better == "higher" else min(values)}


def _mark_best(content: str, is_best: bool) -> str:
    return f'<strong>{content}</strong><span class="vh"> (best)</span>' if is_best else content


def _td(content: str, value=None, classes: tuple[str, ...] = (), title: str = "") -> str:
    attrs = ""
    if classes:
        attrs += f' class="{" ".join(classes)}"'
    if value is not None:
        attrs += f' data-value="{_esc(value)}"'
    if title:
        attrs += f' title="{_esc(title)}"'
    return f"<td{attrs}>{content}</td>"


def _metric_cell(row, metric: str, domain, best: set[float], failed_text: str,
                 with_std: bool = True) -> str:
    from ravlm_bench.api import format_metric

    mean = row.get(metric, math.nan)
    if not _finite(mean):
        return _td(failed_text, "", ("failed",) if failed_text == "failed" else ())
    std = row.get(f"{metric}_std", math.nan)
    lo, hi = row.get(f"{metric}_ci95_lo", math.nan), row.get(f"{metric}_ci95_hi", math.nan)
    content = _mark_best(f"{mean:.3f}", float(mean) in best)
    if with_std and _finite(std):
        content += f" <small>±{std:.3f}</small>"
    content += range_bar(mean, lo, hi, domain)
    if _finite(lo) and _finite(hi):
        content += f'<span class="vh"> 95% CI {lo:.3f} to {hi:.3f}</span>'
    return _td(content, _raw(mean), ("best",) if float(mean) in best else (),
               title=format_metric(row, metric, with_ci=True))


def _header(label: str, numeric: bool, title: str = "") -> str:
    kind = "num" if numeric else "text"
    cls = "" if numeric else ' class="text"'
    tip = f' title="{_esc(title)}"' if title else ""
    return (f'<th scope="col" data-type="{kind}"{cls}{tip}><button type="button" '
            f'class="sort">{_esc(label)}<span class="arrow" aria-hidden="true"></span>'
            f"</button></th>")


def _row(system: str, status: str, order: int, cells: list[str]) -> str:
    return (f'<tr data-system="{_esc(system)}" data-status="{_esc(status)}" '
            f'data-order="{order}"><th scope="row" class="text" data-value="{_esc(system)}">'
            f'{_esc(system)}</th>{"".join(cells)}</tr>')


def _table(caption: str, headers: list[str], rows: list[str]) -> str:
    return (f'<div class="scroll"><table><caption>{caption}</caption><thead><tr>'
            f'{_header("system", False)}{"".join(headers)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def task_table(board, task: str) -> str:
    table = board.tables[task]
    declarations = board.declarations(task)
    metrics = board.metrics(task)
    main = board.main_metric(task)
    costs = [c for c in COST_COLUMNS if c in table.columns and table[c].map(_finite).any()]
    with_key = "retrieval_key" in table.columns and table["retrieval_key"].astype(bool).any()
    diagnostics = [d for d in DIAGNOSTIC_COLUMNS if with_key and d in table.columns]
    compared = board.baseline is not None and "delta_vs_baseline" in table.columns

    headers = [_header(m + (" (main)" if m == main else ""), True,
                       f"{m}: mean over seeds (hover: ± std), bar: 95% CI"
                       f" ({'higher' if declarations[m].higher_is_better else 'lower'} "
                       f"is better)") for m in metrics]
    headers += [_header(COMPACT_HEADERS[c], True, f"{c} ({COLUMN_BETTER[c]} is better)")
                for c in costs]
    if with_key:
        headers.append(_header("key", False, "what the retriever searches with"))
        headers += [_header(COMPACT_HEADERS[d], True, d) for d in diagnostics]
    if compared:
        headers.append(_header(f"Δ vs {board.baseline}", True,
                               f"{main} minus the baseline's, paired over the same "
                               f"resamples; p: one-sided, Holm-adjusted"))
    headers += [_header("seeds", True), _header("status", False)]

    domains = {m: _domain(table, m, f"{m}_ci95_lo", f"{m}_ci95_hi") for m in metrics}
    best = {m: _best_values(table, m, "higher" if declarations[m].higher_is_better
                            else "lower") for m in metrics}
    best.update({c: _best_values(table, c, COLUMN_BETTER[c]) for c in (*costs, *diagnostics)})
    higher_main = declarations[main].higher_is_better if main else True
    best["delta"] = _best_values(table, "delta_vs_baseline",
                                 "higher" if higher_main else "lower") if compared else set()
    delta_domain = _domain(table, "delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi")
    delta_domain = (min(delta_domain[0], 0.0), max(delta_domain[1], 0.0))

    rows = []
    for order, (system, row) in enumerate(table.iterrows()):
        failed_text = "failed" if row["status"] == "failed" else "–"
        # std beside the main metric only, to keep the table narrow; every cell's title
        # has mean ± std [CI]
        cells = [_metric_cell(row, m, domains[m], best[m], failed_text, with_std=m == main)
                 for m in metrics]
        for cost in costs:
            value = row[cost]
            is_best = _finite(value) and float(value) in best[cost]
            cells.append(_td(_mark_best(_esc(format_cost(cost, value)), is_best), _raw(value),
                             ("best",) if is_best else ()))
        if with_key:
            cells.append(_td(_esc(row["retrieval_key"] or "–"), row["retrieval_key"] or "",
                             ("text",)))
            for name in diagnostics:
                value = row[name]
                is_best = _finite(value) and float(value) in best[name]
                text = f"{value:.3f}" if _finite(value) else "–"
                cells.append(_td(_mark_best(text, is_best), _raw(value),
                                 ("best",) if is_best else ()))
        if compared:
            delta = row["delta_vs_baseline"]
            if _finite(delta):
                is_best = float(delta) in best["delta"]
                p_holm = row["p_holm"]
                content = _mark_best(f"{delta:+.3f}", is_best)
                content += range_bar(delta, row["delta_ci95_lo"], row["delta_ci95_hi"],
                                     delta_domain)
                content += (f" <small>p={row['p_value']:.3f}"
                            + (f", Holm {p_holm:.3f}" if _finite(p_holm) else "")
                            + "</small>")
                title = (f"{delta:+.3f} [{row['delta_ci95_lo']:+.3f}, "
                         f"{row['delta_ci95_hi']:+.3f}] over {row['paired_seeds']} paired "
                         f"seeds")
                cells.append(_td(content, _raw(delta), ("best",) if is_best else (), title))
            else:
                cells.append(_td("baseline" if system == board.baseline else "–", ""))
        cells.append(_td(f"{int(row['n_seeds'])}/{len(board.seeds)}", int(row["n_seeds"])))
        status = _esc(row["status"])
        if row["error"]:
            status += f'<div class="error">{_esc(row["error"])}</div>'
        problem = row["status"] in ("failed", "partial")
        cells.append(_td(status, row["status"], ("text", "failed") if problem else ("text",)))
        rows.append(_row(str(system), str(row["status"]), order, cells))
    caption = (f"{_esc(task)}: every metric's mean over seeds (bar: its 95% interval on the "
               f"column's scale); best per column in bold")
    return _table(caption, headers, rows)


def overview_table(board) -> str:
    tasks = list(board.tasks)
    headers = [_header(f"{task}", True, f"{board.main_metric(task)} (main metric)")
               for task in tasks]
    domains, best = {}, {}
    for task in tasks:
        main = board.main_metric(task)
        table = board.tables[task]
        domains[task] = _domain(table, main, f"{main}_ci95_lo", f"{main}_ci95_hi") \
            if main else (0.0, 1.0)
        higher = board.declarations(task)[main].higher_is_better if main else True
        best[task] = _best_values(table, main, "higher" if higher else "lower") \
            if main else set()
    rows = []
    for order, system in enumerate(board.systems):
        cells, statuses = [], []
        for task in tasks:
            table, main = board.tables[task], board.main_metric(task)
            if system not in table.index or main is None:
                cells.append(_td("–", ""))
                continue
            row = table.loc[system]
            statuses.append(row["status"])
            failed_text = "failed" if row["status"] == "failed" else "–"
            cells.append(_metric_cell(row, main, domains[task], best[task], failed_text))
        status = "ok" if all(s == "ok" for s in statuses) else next(
            s for s in statuses if s != "ok") if statuses else "not run"
        rows.append(_row(system, status, order, cells))
    caption = ("Overview: each task's main metric, mean ± std over seeds (bar: 95% interval); "
               "best per column in bold")
    return _table(caption, headers, rows)


# ---------------------------------------------------------------------------------------
# Fronts, inline SVG
# ---------------------------------------------------------------------------------------

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
                        f'font-size="8" text-anchor="{anchor}" {attrs}>{_esc(text)}</text>')
        return ""


def front_svg(board, task: str, axis) -> str:
    from ravlm_bench.api import front_line, front_points, sweep_series, uses_log_scale

    points = front_points(board, task, axis.column)
    if not points:
        return ""
    main = board.main_metric(task)
    log = uses_log_scale(axis.column, [p.cost for p in points])
    costs = [p.cost for p in points]
    qualities = [v for p in points for v in (p.quality, p.quality_lo, p.quality_hi)
                 if _finite(v)]
    x_lo, x_hi = min(costs), max(costs)
    y_lo, y_hi = min(qualities), max(qualities)
    if log:
        x_lo, x_hi = math.log10(x_lo) - 0.1, math.log10(x_hi) + 0.1
    else:
        pad = (x_hi - x_lo) * 0.08 or abs(x_hi) * 0.1 or 1.0
        x_lo, x_hi = x_lo - pad, x_hi + pad
    y_pad = (y_hi - y_lo) * 0.1 or 0.05
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad

    def x(cost: float) -> float:
        v = math.log10(cost) if log else cost
        return LEFT + (W - LEFT - RIGHT) * (v - x_lo) / (x_hi - x_lo)

    def y(quality: float) -> float:
        return H - BOTTOM - (H - TOP - BOTTOM) * (quality - y_lo) / (y_hi - y_lo)

    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="{{id}}-t">',
             f'<title id="{{id}}-t">{_esc(task)}: {_esc(main)} against {_esc(axis.label)}'
             f"</title>",
             f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
             f'height="{H - TOP - BOTTOM}" fill="#fafafa" stroke="#bbb"/>']
    tick_lo, tick_hi = (10 ** x_lo, 10 ** x_hi) if log else (min(costs), max(costs))
    ticks = _ticks(tick_lo, tick_hi, log)
    for number, tick in enumerate(ticks):
        # the outer ticks read inwards so that their text stays inside the figure
        anchor = "start" if number == 0 and len(ticks) > 1 else \
            "end" if number == len(ticks) - 1 and len(ticks) > 1 else "middle"
        parts.append(f'<text x="{x(tick):.1f}" y="{H - BOTTOM + 12}" font-size="9" '
                     f'text-anchor="{anchor}">{_short(tick, axis.column)}</text>')
    for i in range(4):
        q = y_lo + y_pad + (y_hi - y_lo - 2 * y_pad) * i / 3
        parts.append(f'<text x="{LEFT - 4}" y="{y(q) + 3:.1f}" font-size="9" '
                     f'text-anchor="end">{q:.3f}</text>')
    direction = "higher" if axis.higher_is_better else "lower"
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" font-size="10" '
                 f'text-anchor="middle">{_esc(axis.label)}{" (log)" if log else ""}, '
                 f"{direction} is better</text>")
    labels = LabelPlacer()
    front = front_line(points)
    if len(front) > 1:
        path = [f"M{x(front[0].cost):.1f},{y(front[0].quality):.1f}"]
        for prev, point in zip(front, front[1:], strict=False):
            path.append(f"L{x(point.cost):.1f},{y(prev.quality):.1f}"
                        f"L{x(point.cost):.1f},{y(point.quality):.1f}")
        parts.append(f'<path class="front-line" d="{"".join(path)}" fill="none" '
                     f'stroke="#c44e52" stroke-width="1.2" opacity=".7"/>')
    for series in sweep_series(points):
        coords = " ".join(f"{x(p.cost):.1f},{y(p.quality):.1f}" for p in series.points)
        parts.append(f'<polyline class="sweep" data-base="{_esc(series.base)}" '
                     f'points="{coords}" fill="none" stroke="#55a868" stroke-dasharray="4 2"'
                     f'><title>sweep of {_esc(series.base)}</title></polyline>')
        first = series.points[0]
        parts.append(labels.place(x(first.cost), y(first.quality), f"{series.base} sweep",
                                  'fill="#2f6f3e" font-style="italic"', above=True))
        for p in series.points:
            parts.append(labels.place(x(p.cost), y(p.quality), p.sweep_value,
                                      'fill="#2f6f3e"', above=False))
    for p in points:
        colour = "#c44e52" if p.on_front else "#4c72b0"
        interval = (f" [{p.quality_lo:.3f}, {p.quality_hi:.3f}]"
                    if _finite(p.quality_lo) and _finite(p.quality_hi) else "")
        tip = (f"{p.system}: {main} {p.quality:.3f}{interval}; {axis.column} "
               f"{format_cost(axis.column, p.cost)}"
               + ("; on the Pareto front" if p.on_front else ""))
        group = [f'<g class="point{" on-front" if p.on_front else ""}" '
                 f'data-system="{_esc(p.system)}"><title>{_esc(tip)}</title>']
        if interval:
            group.append(f'<line x1="{x(p.cost):.1f}" x2="{x(p.cost):.1f}" '
                         f'y1="{y(p.quality_lo):.1f}" y2="{y(p.quality_hi):.1f}" '
                         f'stroke="{colour}"/>')
        group.append(f'<circle cx="{x(p.cost):.1f}" cy="{y(p.quality):.1f}" r="4" '
                     f'fill="{colour if p.on_front else "#fff"}" stroke="{colour}" '
                     f'stroke-width="1.5"/>')
        if p.on_front and p.sweep_base is None:  # a sweep's points carry their values
            group.append(labels.place(x(p.cost), y(p.quality), p.system, "", above=True))
        group.append("</g>")
        parts.append("".join(group))
    parts.append("</svg>")
    svg = "".join(parts)
    on_front = ", ".join(p.system for p in front)
    others = ", ".join(p.system for p in points if not p.on_front) or "none"
    caption = (f"{_esc(axis.label)}: on the front (filled) {_esc(on_front)}; "
               f"dominated: {_esc(others)}")
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def fronts_section(board, task: str) -> str:
    from ravlm_bench.api import COST_AXES

    figures = []
    for number, axis in enumerate(COST_AXES):
        figure = front_svg(board, task, axis)
        if figure:
            figures.append(figure.replace("{id}", _esc(f"front-{task}-{number}")))
    if not figures:
        return '<p class="note">No retrieval costs recorded: no quality-against-cost front.</p>'
    return ('<p class="note">Quality against cost: filled points are on the Pareto front '
            "(nothing else is at least as good on both and better on one), joined by the "
            "red step line; dashed green lines join a sweep's variants. Hover a point for "
            f'its numbers.</p><div class="fronts">{"".join(figures)}</div>')


# ---------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------


def _fingerprints(board) -> dict[str, dict[str, str]]:
    """system -> component kind -> fingerprint, from its first finished cell that has them
    (the cells as the leaderboard read and checked them)."""
    out: dict[str, dict[str, str]] = {}
    cells = board.cells
    columns = [c for c in cells.columns if c.startswith("fingerprint:")] if len(cells) else []
    for row in cells[cells["status"] == "ok"].to_dict("records") if columns else []:
        found = {c.split(":", 1)[1]: row[c] for c in columns if isinstance(row[c], str)}
        if found and row["system"] not in out:
            out[row["system"]] = found
    return out


def provenance_panel(board) -> str:
    versions = board.versions
    fingerprints = _fingerprints(board)
    facts = [("suite", board.suite), ("suite sha256", board.suite_sha256 or "unknown"),
             ("created", board.created or "unknown"), ("baseline", board.baseline or "none"),
             ("seeds", ", ".join(map(str, board.seeds)))]
    facts += [(f"version: {name}", value) for name, value in sorted(versions.items())]
    fact_rows = "".join(f'<tr><th scope="row">{_esc(k)}</th><td><code>{_esc(v)}</code></td>'
                        f"</tr>" for k, v in facts)
    system_rows = []
    for system, record in board.systems.items():
        items = []
        for field, kind in ROLE_KINDS.items():
            component = record.get(field) if isinstance(record, dict) else None
            if not isinstance(component, dict):
                continue
            params = ", ".join(f"{k}={v}" for k, v in component.items() if k != "name")
            text = f"{kind}: <b>{_esc(component.get('name', '?'))}</b>"
            if params:
                text += f" ({_esc(params)})"
            fingerprint = fingerprints.get(system, {}).get(kind)
            if fingerprint:
                text += f" <small>fingerprint <code>{_esc(fingerprint)}</code></small>"
            items.append(f"<li>{text}</li>")
        sweep = record.get("sweep") if isinstance(record, dict) else None
        if isinstance(sweep, dict):
            items.append(f"<li>sweep of <b>{_esc(sweep.get('base'))}</b>: "
                         f"{_esc(sweep.get('values'))}</li>")
        system_rows.append(f'<tr><th scope="row">{_esc(system)}</th><td><ul>{"".join(items)}'
                           f"</ul></td></tr>")
    return ("<details><summary>Provenance: versions, suite and each system's components"
            "</summary><div class=\"scroll\"><table><caption>The run</caption><tbody>"
            f"{fact_rows}</tbody></table></div><div class=\"scroll\"><table><caption>Systems "
            "(components as run.json records them; fingerprints from the cells)</caption>"
            f"<tbody>{''.join(system_rows)}</tbody></table></div></details>")


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------


def render_leaderboard(board, generated: str) -> str:
    from ravlm_bench.api import describe

    title = _esc(f"Leaderboard: {board.suite}")
    parts = ["<!DOCTYPE html>", f"<!-- {generated} -->", '<html lang="en"><head>',
             '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{title}</title>", f"<style>{CSS}</style></head><body>",
             f"<header><h1>{title}</h1>",
             f'<p class="note">{_esc(describe(board))}. Run created '
             f"{_esc(board.created or 'unknown')}; suite sha256 "
             f"<code>{_esc(board.suite_sha256[:12] or 'unknown')}</code>.</p></header>",
             '<div class="controls" role="search">'
             '<label for="system-filter">Filter systems by name</label>'
             '<input id="system-filter" type="search" placeholder="e.g. hnsw">'
             '<label for="status-filter">Status</label><select id="status-filter">'
             '<option value="">any</option><option value="ok">ok</option>'
             '<option value="problem">failed, partial or unfinished</option></select>'
             '<span id="filter-summary" aria-live="polite"></span></div>',
             "<main><h2>Overview (main metric per task)</h2>", overview_table(board)]
    for task, meta in board.tasks.items():
        parts += [f'<section aria-labelledby="task-{_esc(task)}">',
                  f'<h2 id="task-{_esc(task)}">{_esc(task)}</h2>',
                  f'<p class="note">{_esc(meta["kind"])}; main metric '
                  f"<code>{_esc(meta['main_metric'])}</code>.</p>",
                  fronts_section(board, task), task_table(board, task), "</section>"]
    parts += ["</main>", provenance_panel(board), f"<script>{SCRIPT}</script>",
              "</body></html>"]
    return "\n".join(parts) + "\n"
