"""leaderboard.html: one self-contained page (inline style and script, nothing fetched).

Per task a sortable, filterable ``<table>``: each metric as its mean with the 95% interval
drawn as a small range bar (the mean a tick in it), rows ranked by the main metric with
their tier, the top tier's main metric in bold with a visually hidden "(top tier)" (point
estimates alone do not make a winner), the best cost and diagnostic of each column in bold
with a visually hidden "(best)", failed cells with their error. Above each
table the task's quality-against-cost fronts as inline SVG
(:mod:`ravlm_plugins.publishers.fronts_svg`); at the end a ``<details>`` panel with the
run's provenance. Sorting reads each
cell's ``data-value`` (the raw number), so "1,024" sorts as a number and missing values go
last in both directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ravlm_bench.api import (
    COLUMN_BETTER,
    COMPACT_HEADERS,
    COST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    ROLE_KINDS,
    format_cost,
)
from ravlm_plugins.publishers._markup import esc, finite
from ravlm_plugins.publishers.fronts_svg import fronts_section

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


def _raw(value) -> str:
    """A number as a cell's ``data-value`` (full precision), "" when missing."""
    return repr(float(value)) if finite(value) else ""


# ---------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------


def range_bar(mean: float, lo: float, hi: float, domain: tuple[float, float]) -> str:
    """A 56x10 inline SVG: the interval [lo, hi] as a bar, the mean as a tick, placed on
    the column's common scale ``domain``. Empty without an interval."""
    if not (finite(lo) and finite(hi) and finite(mean)):
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
              for v in table[c] if finite(v)]
    return (min(values), max(values)) if values else (0.0, 1.0)


def _best_values(table, column: str, better: str | None) -> set[float]:
    if better is None or column not in table.columns:
        return set()
    values = [float(v) for v in table[column] if finite(v)]
    if len(values) < 2:
        return set()
    return {max(values) if better == "higher" else min(values)}


def _mark_best(content: str, is_best: bool, label: str = "best") -> str:
    return (f'<strong>{content}</strong><span class="vh"> ({label})</span>' if is_best
            else content)


def _top_tier_values(table, main: str | None) -> set[float]:
    """The main metric of the systems in the top tier (``leaderboard.tiers``)."""
    if main is None or "tier" not in table.columns:
        return set()
    top = table[table["tier"] == 1]
    return {float(v) for v in top[main] if finite(v)} if len(table) > 1 else set()


def _td(content: str, value=None, classes: tuple[str, ...] = (), title: str = "") -> str:
    attrs = ""
    if classes:
        attrs += f' class="{" ".join(classes)}"'
    if value is not None:
        attrs += f' data-value="{esc(value)}"'
    if title:
        attrs += f' title="{esc(title)}"'
    return f"<td{attrs}>{content}</td>"


def _metric_cell(row, metric: str, domain, best: set[float], failed_text: str,
                 with_std: bool = True, label: str = "top tier") -> str:
    from ravlm_bench.api import format_metric

    mean = row.get(metric, math.nan)
    if not finite(mean):
        return _td(failed_text, "", ("failed",) if failed_text == "failed" else ())
    std = row.get(f"{metric}_std", math.nan)
    lo, hi = row.get(f"{metric}_ci95_lo", math.nan), row.get(f"{metric}_ci95_hi", math.nan)
    content = _mark_best(f"{mean:.3f}", float(mean) in best, label)
    if with_std and finite(std):
        content += f" <small>±{std:.3f}</small>"
    content += range_bar(mean, lo, hi, domain)
    if finite(lo) and finite(hi):
        content += f'<span class="vh"> 95% CI {lo:.3f} to {hi:.3f}</span>'
    return _td(content, _raw(mean), ("best",) if float(mean) in best else (),
               title=format_metric(row, metric, with_ci=True))


def _header(label: str, numeric: bool, title: str = "") -> str:
    kind = "num" if numeric else "text"
    cls = "" if numeric else ' class="text"'
    tip = f' title="{esc(title)}"' if title else ""
    return (f'<th scope="col" data-type="{kind}"{cls}{tip}><button type="button" '
            f'class="sort">{esc(label)}<span class="arrow" aria-hidden="true"></span>'
            f"</button></th>")


def _row(system: str, status: str, order: int, cells: list[str]) -> str:
    return (f'<tr data-system="{esc(system)}" data-status="{esc(status)}" '
            f'data-order="{order}"><th scope="row" class="text" data-value="{esc(system)}">'
            f'{esc(system)}</th>{"".join(cells)}</tr>')


def _table(caption: str, headers: list[str], rows: list[str]) -> str:
    return (f'<div class="scroll"><table><caption>{caption}</caption><thead><tr>'
            f'{_header("system", False)}{"".join(headers)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


@dataclass
class _TaskColumns:
    """What a task's table shows beside its metrics, and each column's scale and best."""

    metrics: list[str]
    main: str | None
    higher: dict[str, bool]          # metric -> higher is better
    costs: list[str]                 # the cost columns some system has a value in
    with_key: bool                   # some system retrieves: its key and diagnostics shown
    diagnostics: list[str]
    compared: bool                   # a baseline, so a paired test per system
    domains: dict[str, tuple[float, float]] = field(default_factory=dict)
    best: dict[str, set[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, board, task: str) -> _TaskColumns:
        table = board.tables[task]
        with_key = "retrieval_key" in table.columns and table["retrieval_key"].astype(bool).any()
        cols = cls(
            metrics=board.metrics(task), main=board.main_metric(task),
            higher={m: d.higher_is_better for m, d in board.declarations(task).items()},
            costs=[c for c in COST_COLUMNS
                   if c in table.columns and table[c].map(finite).any()],
            with_key=with_key,
            diagnostics=[d for d in DIAGNOSTIC_COLUMNS
                         if with_key and d in table.columns and table[d].notna().any()],
            compared=board.baseline is not None and "delta_vs_baseline" in table.columns)
        for m in cols.metrics:
            cols.domains[m] = _domain(table, m, f"{m}_ci95_lo", f"{m}_ci95_hi")
            # only the main metric is tested between systems: its top tier is marked
            cols.best[m] = _top_tier_values(table, m) if m == cols.main else set()
        cols.best.update({c: _best_values(table, c, COLUMN_BETTER[c])
                          for c in (*cols.costs, *cols.diagnostics)})
        cols.best["delta"] = ({float(v) for v in table.loc[table["tier"] == 1,
                                                           "delta_vs_baseline"] if finite(v)}
                              if cols.compared and "tier" in table.columns else set())
        low, high = _domain(table, "delta_vs_baseline", "delta_ci95_lo", "delta_ci95_hi")
        cols.domains["delta"] = (min(low, 0.0), max(high, 0.0))
        return cols


def task_table(board, task: str) -> str:
    """``task``'s table: every metric, the costs, the retrieval key and diagnostics, the
    paired test against the baseline, the seeds and the status, one row per system."""
    cols = _TaskColumns.of(board, task)
    rows = [_row(str(system), str(row["status"]), order, _task_cells(board, system, row, cols))
            for order, (system, row) in enumerate(board.tables[task].iterrows())]
    caption = (f"{esc(task)}: every metric's mean over seeds (bar: its 95% interval on the "
               f"column's scale), ranked by {esc(cols.main or 'the main metric')} in tiers "
               f"(a system shares the tier of the one above unless their paired test is "
               f"significant after Holm); the top tier's {esc(cols.main or 'main metric')} "
               f"in bold, the best cost and diagnostic per column in bold")
    return _table(caption, _task_headers(board, cols), rows)


def dependence_table(board, task: str) -> str:
    """``task``'s retrieval dependence (``display_dependence``'s rows, sortable): the
    dependence with its interval bar, the main metric at each corruption level and with
    nothing retrieved, and a knowledge task's answer-versus-evidence shares; "" when no
    system of the task measured it."""
    from ravlm_bench.api import (
        ANSWER_EVIDENCE_COLUMNS,
        DEPENDENCE_LEVELS,
        DEPENDENCE_METRIC,
        dependence_caption,
        display_dependence,
    )

    shown = display_dependence(board, task)
    if shown is None:
        return ""
    table = board.tables[task].loc[list(shown.index)]
    metric = DEPENDENCE_METRIC
    domain = _domain(table, metric, f"{metric}_ci95_lo", f"{metric}_ci95_hi")
    domain = (min(domain[0], 0.0), max(domain[1], 0.0))
    evidence = [c for c in ANSWER_EVIDENCE_COLUMNS if c.replace("_", " ") in shown.columns]
    headers = [_header("dependence", True, "main metric at p=0 minus at p=1, mean over "
                                           "seeds; bar: its paired 95% interval"),
               *(_header(label, True) for label in shown.columns[1:])]
    rows = []
    for order, (system, row) in enumerate(table.iterrows()):
        cells = [_metric_cell(row, metric, domain, set(), "–")]
        cells += [_td(esc(shown.loc[system, label]), _raw(row.get(f"dependence_{level}")))
                  for level, label in zip(DEPENDENCE_LEVELS, shown.columns[1:], strict=False)]
        cells += [_td(esc(shown.loc[system, c.replace("_", " ")]), _raw(row[c]))
                  for c in evidence]
        rows.append(_row(str(system), str(row["status"]), order, cells))
    return _table(esc(dependence_caption(board, task)), headers, rows)


def _task_headers(board, cols: _TaskColumns) -> list[str]:
    headers = [_header("tier", True, "1 = top; a new tier starts where the paired two-sided "
                                     "test against the system above is significant (Holm)")]
    headers += [_header(m + (" (main)" if m == cols.main else ""), True,
                       f"{m}: mean over seeds (hover: ± std), bar: 95% CI"
                       f" ({'higher' if cols.higher[m] else 'lower'} is better)")
               for m in cols.metrics]
    headers += [_header(COMPACT_HEADERS[c], True, f"{c} ({COLUMN_BETTER[c]} is better)")
                for c in cols.costs]
    if cols.with_key:
        headers.append(_header("key", False, "what the retriever searches with"))
        headers += [_header(COMPACT_HEADERS[d], True, d) for d in cols.diagnostics]
    if cols.compared:
        headers.append(_header(f"Δ vs {board.baseline}", True,
                               f"{cols.main} minus the baseline's, paired over the same "
                               f"resamples; p: two-sided, Holm-adjusted"))
    return headers + [_header("seeds", True), _header("status", False)]


def _task_cells(board, system: str, row, cols: _TaskColumns) -> list[str]:
    failed_text = "failed" if row["status"] == "failed" else "–"
    tier = row.get("tier", math.nan)
    p_above = row.get("p_vs_above_holm", math.nan)
    cells = [_td(f"{tier:.0f}" if finite(tier) else "–", _raw(tier),
                 title=f"vs the system above: p={p_above:.3f} (Holm)" if finite(p_above)
                 else "")]
    # std beside the main metric only, to keep the table narrow; every cell's title has
    # mean ± std [CI]
    cells += [_metric_cell(row, m, cols.domains[m], cols.best[m], failed_text,
                          with_std=m == cols.main) for m in cols.metrics]
    for cost in cols.costs:
        value = row[cost]
        is_best = finite(value) and float(value) in cols.best[cost]
        cells.append(_td(_mark_best(esc(format_cost(cost, value)), is_best), _raw(value),
                         ("best",) if is_best else ()))
    if cols.with_key:
        cells.append(_td(esc(row["retrieval_key"] or "–"), row["retrieval_key"] or "",
                         ("text",)))
        for name in cols.diagnostics:
            value = row[name]
            is_best = finite(value) and float(value) in cols.best[name]
            text = f"{value:.3f}" if finite(value) else "–"
            cells.append(_td(_mark_best(text, is_best), _raw(value),
                             ("best",) if is_best else ()))
    if cols.compared:
        cells.append(_delta_cell(board, system, row, cols))
    cells.append(_td(f"{int(row['n_seeds'])}/{len(board.seeds)}", int(row["n_seeds"])))
    status = esc(row["status"])
    if row["error"]:
        status += f'<div class="error">{esc(row["error"])}</div>'
    problem = row["status"] in ("failed", "partial")
    cells.append(_td(status, row["status"], ("text", "failed") if problem else ("text",)))
    return cells


def _delta_cell(board, system: str, row, cols: _TaskColumns) -> str:
    """The paired test against the baseline: Δ with its interval bar and p-values."""
    delta = row["delta_vs_baseline"]
    if not finite(delta):
        return _td("baseline" if system == board.baseline else "–", "")
    is_best = float(delta) in cols.best["delta"]
    p_holm = row["p_two_sided_holm"]
    content = _mark_best(f"{delta:+.3f}", is_best)
    content += range_bar(delta, row["delta_ci95_lo"], row["delta_ci95_hi"],
                         cols.domains["delta"])
    content += (f" <small>p={row['p_two_sided']:.3f}"
                + (f", Holm {p_holm:.3f}" if finite(p_holm) else "")
                + "</small>")
    title = (f"{delta:+.3f} [{row['delta_ci95_lo']:+.3f}, "
             f"{row['delta_ci95_hi']:+.3f}] over {row['paired_seeds']} paired "
             f"seeds")
    return _td(content, _raw(delta), ("best",) if is_best else (), title)


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
        best[task] = _top_tier_values(table, main)
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
               "each task's top tier in bold")
    return _table(caption, headers, rows)


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
    fact_rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td><code>{esc(v)}</code></td>'
                        f"</tr>" for k, v in facts)
    system_rows = []
    for system, record in board.systems.items():
        items = []
        for role, kind in ROLE_KINDS.items():
            component = record.get(role) if isinstance(record, dict) else None
            if not isinstance(component, dict):
                continue
            params = ", ".join(f"{k}={v}" for k, v in component.items() if k != "name")
            text = f"{kind}: <b>{esc(component.get('name', '?'))}</b>"
            if params:
                text += f" ({esc(params)})"
            fingerprint = fingerprints.get(system, {}).get(kind)
            if fingerprint:
                text += f" <small>fingerprint <code>{esc(fingerprint)}</code></small>"
            items.append(f"<li>{text}</li>")
        sweep = record.get("sweep") if isinstance(record, dict) else None
        if isinstance(sweep, dict):
            items.append(f"<li>sweep of <b>{esc(sweep.get('base'))}</b>: "
                         f"{esc(sweep.get('values'))}</li>")
        system_rows.append(f'<tr><th scope="row">{esc(system)}</th><td><ul>{"".join(items)}'
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

    title = esc(f"Leaderboard: {board.suite}")
    parts = ["<!DOCTYPE html>", f"<!-- {generated} -->", '<html lang="en"><head>',
             '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{title}</title>", f"<style>{CSS}</style></head><body>",
             f"<header><h1>{title}</h1>",
             f'<p class="note">{esc(describe(board))}. Run created '
             f"{esc(board.created or 'unknown')}; suite sha256 "
             f"<code>{esc(board.suite_sha256[:12] or 'unknown')}</code>.</p></header>",
             '<div class="controls" role="search">'
             '<label for="system-filter">Filter systems by name</label>'
             '<input id="system-filter" type="search" placeholder="e.g. hnsw">'
             '<label for="status-filter">Status</label><select id="status-filter">'
             '<option value="">any</option><option value="ok">ok</option>'
             '<option value="problem">failed, partial or unfinished</option></select>'
             '<span id="filter-summary" aria-live="polite"></span></div>',
             "<main><h2>Overview (main metric per task)</h2>", overview_table(board)]
    for task, meta in board.tasks.items():
        parts += [f'<section aria-labelledby="task-{esc(task)}">',
                  f'<h2 id="task-{esc(task)}">{esc(task)}</h2>',
                  f'<p class="note">{esc(meta["kind"])}; main metric '
                  f"<code>{esc(meta['main_metric'])}</code>.</p>",
                  fronts_section(board, task), task_table(board, task),
                  dependence_table(board, task), "</section>"]
    parts += ["</main>", provenance_panel(board), f"<script>{SCRIPT}</script>",
              "</body></html>"]
    return "\n".join(parts) + "\n"
