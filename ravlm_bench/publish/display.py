"""A leaderboard as text: the terminal's rendering and the cells the text publishers print.

:func:`display_table` and :func:`display_overview` turn a
:class:`~ravlm_bench.publish.leaderboard.Leaderboard`'s tables into strings (``mean ± std
[95% CI]``, costs in readable units, the paired test against the baseline, each system's
status), :func:`describe` says in one line what the numbers are, and
:func:`render_terminal` lays it all out for ``ravlm-bench leaderboard`` and ``run``. The
Markdown, LaTeX and HTML publishers print these same strings.
"""

from __future__ import annotations

import math

import pandas as pd

from ravlm_bench.publish.leaderboard import (
    ANSWER_EVIDENCE_COLUMNS,
    COST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    TIER_ALPHA,
    Leaderboard,
)
from ravlm_bench.scoring.dependence import DEPENDENCE_LEVELS, DEPENDENCE_METRIC, level_label


def format_number(value, spec: str = ".3f") -> str:
    """``value`` formatted by ``spec``, or "–" when it is missing (None or NaN)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def format_cost(name: str, value) -> str:
    """A cost column's value for display: index memory in B/KiB/MiB/GiB, queries/s with
    thousands separators, latencies to 3 significant digits, other costs to 2 decimals, and
    "–" for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name == "index_memory_bytes":
        for unit in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024 or unit == "GiB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1024
    if name == "retrieval_qps":
        return f"{value:,.0f}"
    return f"{value:.3g}" if name.startswith("latency") else f"{value:.2f}"


def format_metric(row: pd.Series, metric: str, *, with_ci: bool) -> str:
    """``mean ± std [lo, hi]``: std over seeds, [lo, hi] the mean 95% bootstrap interval."""
    mean = row.get(metric, math.nan) if metric else math.nan
    if math.isnan(mean):
        return "failed" if row["status"] == "failed" else "–"
    text = format_number(mean)
    std = row.get(f"{metric}_std", math.nan)
    if not math.isnan(std):
        text += f" ± {format_number(std)}"
    lo, hi = row.get(f"{metric}_ci95_lo", math.nan), row.get(f"{metric}_ci95_hi", math.nan)
    if with_ci and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{format_number(lo)}, {format_number(hi)}]"
    return text


# Short headers for the terminal, where width is scarce.
COMPACT_HEADERS = {
    "weighted_precision": "w-prec", "weighted_recall": "w-rec", "accuracy": "acc",
    "macro_f1": "macro-F1", "head_f1": "head-F1", "tail_f1": "tail-F1",
    "retrieval_qps": "qps", "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms",
    "index_memory_bytes": "index mem", "index_build_s": "build s", "train_s": "train s",
    "retrieval_key": "key", "label_precision_at_k": "label P@k",
    "recall_vs_exact": "R vs exact", "all_padding": "no nbrs", "one_image": "one image",
    "pseudo_recall_at_k": "pseudo-R@k", "evidence_recall_at_k": "gold R@k",
}


def display_table(board: Leaderboard, task: str, *, compact: bool = False) -> pd.DataFrame:
    """``task``'s table as strings, ready to print.

    Rows come ranked by the main metric, the tier first (:func:`~ravlm_bench.publish.
    leaderboard.tiers`). Full: every metric as ``mean ± std [CI]``, the status with its
    error. Compact (the terminal): the main metric in full, the others as means, short
    headers, and the status without the error (:func:`error_lines` lists those).
    """
    table = board.tables[task]
    main = board.main_metric(task)
    out = {}
    for system, row in table.iterrows():
        shown = {"tier": format_number(row.get("tier", math.nan), ".0f")}
        for metric in board.metrics(task):
            if compact and metric != main:
                shown[metric] = format_number(row[metric]) if not math.isnan(row[metric]) else (
                    "failed" if row["status"] == "failed" else "–")
            else:
                shown[metric] = format_metric(row, metric, with_ci=True)
        for cost in COST_COLUMNS:
            shown[cost] = format_cost(cost, row[cost])
        if table["retrieval_key"].astype(bool).any():
            shown["retrieval_key"] = row["retrieval_key"] or "–"
            for name in DIAGNOSTIC_COLUMNS:
                if table[name].notna().any():  # a diagnostic no system has is left out
                    shown[name] = format_number(row[name])
        if "delta_vs_baseline" in table.columns:
            if math.isnan(row["delta_vs_baseline"]):
                shown["vs baseline"] = "baseline" if system == board.baseline else "–"
            else:
                shown["vs baseline"] = (f"{row['delta_vs_baseline']:+.3f} "
                                        f"[{format_number(row['delta_ci95_lo'], '+.3f')}, "
                                        f"{format_number(row['delta_ci95_hi'], '+.3f')}] "
                                        f"p={row['p_two_sided']:.3f} "
                                        f"(Holm {format_number(row['p_two_sided_holm'])})")
        shown["seeds"] = f"{row['n_seeds']}/{len(board.seeds)}"
        shown["status"] = row["status"] + (f": {row['error']}"
                                           if row["error"] and not compact else "")
        out[system] = shown
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "system"
    if compact:
        frame = frame.rename(columns=COMPACT_HEADERS)
    return frame


def display_dependence(board: Leaderboard, task: str) -> pd.DataFrame | None:
    """``task``'s retrieval dependence as strings, one row per system that measured it (in
    the table's order): the dependence ``mean [95% CI]``, the main metric at each
    corruption level and with nothing retrieved, and for a knowledge task the
    answer-versus-evidence shares of its questions. None when no system measured it."""
    table = board.tables[task]
    if DEPENDENCE_METRIC not in table.columns or not table[DEPENDENCE_METRIC].notna().any():
        return None
    evidence = [c for c in ANSWER_EVIDENCE_COLUMNS if c in table and table[c].notna().any()]
    out = {}
    for system, row in table[table[DEPENDENCE_METRIC].notna()].iterrows():
        shown = {"dependence [95% CI]": format_metric(row, DEPENDENCE_METRIC, with_ci=True)}
        for level in DEPENDENCE_LEVELS:
            shown[level_label(level)] = format_number(row.get(f"dependence_{level}"))
        for column in evidence:
            share = format_number(100 * row[column], ".1f")
            shown[column.replace("_", " ")] = share if share == "–" else f"{share}%"
        out[system] = shown
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "system"
    return frame


def dependence_caption(board: Leaderboard, task: str) -> str:
    """What :func:`display_dependence`'s numbers are, in one line."""
    return (f"{task}: retrieval dependence, {board.main_metric(task)} with a share p of each "
            f"test query's retrieved items replaced by random knowledge-base items (seeded "
            f"by the query; no retraining); dependence = p=0 minus p=1, its interval paired "
            f"over the same resamples; 'none': nothing retrieved. Evidence: an acceptable "
            f"answer occurs in a retrieved item; right: the predicted answer is acceptable")


def error_lines(board: Leaderboard, task: str) -> list[str]:
    """``system: error`` for every system of ``task`` with failed cells."""
    table = board.tables[task]
    return [f"{system}: {row['error']}" for system, row in table.iterrows() if row["error"]]


def display_overview(board: Leaderboard) -> pd.DataFrame:
    """Systems x tasks: the main metric as ``mean ± std``, or ``failed``."""
    out: dict[str, list[str]] = {}
    for task in board.tasks:
        main = board.main_metric(task)
        out[task] = [format_metric(board.tables[task].loc[s], main, with_ci=False)
                     if s in board.tables[task].index and main else "–"
                     for s in board.systems]
    frame = pd.DataFrame(out, index=list(board.systems))
    frame.index.name = "system"
    return frame


def describe(board: Leaderboard) -> str:
    """One line on what the numbers are, for the header of every rendering."""
    baseline = (f"; Δ vs baseline {board.baseline!r}: paired over the same resamples, "
                f"two-sided p, Holm-adjusted across systems") if board.baseline else ""
    return (f"suite {board.suite!r}, seeds {', '.join(map(str, board.seeds))}: mean ± std "
            f"over seeds [95% CI: a cluster bootstrap resampling test images, each with all "
            f"its test items and its rows from every seed; {seed_note(board)}]; rows ranked "
            f"by the main metric, in tiers: a system shares the tier of the one above unless "
            f"their paired two-sided test is significant (Holm over the adjacent pairs, "
            f"alpha {TIER_ALPHA:g}){baseline}")


def seed_note(board: Leaderboard) -> str:
    """What the intervals say about seeds, in words."""
    if len(board.seeds) < 2:
        return "one seed: seed variance is not included"
    if not board.seed_variance:
        return "conditional on these seeds: seed variance is not included"
    return "widened by the seeds' variance: a rerun with new seeds"


def render_terminal(board: Leaderboard) -> str:
    """The leaderboard as plain text: the overview, then one compact table per task."""
    from tabulate import tabulate

    def grid(frame: pd.DataFrame) -> str:
        return tabulate(frame.reset_index(), headers="keys", tablefmt="simple",
                        showindex=False, disable_numparse=True)

    parts = [f"Leaderboard: {describe(board)}", "", "Overview (main metric per task)",
             grid(display_overview(board))]
    for task, meta in board.tasks.items():
        parts += ["", f"{task} ({meta['kind']}; main metric {meta['main_metric']})",
                  grid(display_table(board, task, compact=True))]
        parts += [f"  failed: {line}" for line in error_lines(board, task)]
        dependence = display_dependence(board, task)
        if dependence is not None:
            parts += ["", dependence_caption(board, task), grid(dependence)]
    return "\n".join(parts)
