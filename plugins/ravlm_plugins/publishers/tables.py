"""The table publishers: Markdown, CSV, JSON, LaTeX (booktabs), the HTML page and the
PNG bar chart of each task's main metric. pandas and matplotlib load only when publishing."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from ravlm_plugins.publishers._files import GENERATED, write_published

# Bar colours of tiers 1, 2, ... (cycling): the top tier darkest.
TIER_COLOURS = ("#1d3f72", "#4c72b0", "#7fa3d6", "#55a868", "#8c8c8c")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _none_for_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _none_for_nan(value.item())
    return value


# ---------------------------------------------------------------------------------------
# Text tables
# ---------------------------------------------------------------------------------------


class MarkdownPublisher:
    """leaderboard.md: the overview and every task's full table, GitHub-flavoured."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        from tabulate import tabulate

        from ravlm_bench.api import (
            dependence_caption,
            describe,
            display_dependence,
            display_overview,
            display_table,
        )

        def table(frame) -> str:
            frame = frame.reset_index().map(lambda v: _one_line(v).replace("|", "\\|"))
            return tabulate(frame, headers="keys", tablefmt="github", showindex=False,
                            disable_numparse=True)

        lines = [f"<!-- {GENERATED} -->", f"# Leaderboard: {board.suite}", "",
                 f"{describe(board)}. Run created {board.created or 'unknown'}; "
                 f"suite sha256 `{board.suite_sha256[:12] or 'unknown'}`.", "",
                 "## Overview (main metric per task)", "", table(display_overview(board))]
        for task, meta in board.tasks.items():
            lines += ["", f"## {task}", "",
                      f"{meta['kind']}; main metric `{meta['main_metric']}`.", "",
                      table(display_table(board, task))]
            dependence = display_dependence(board, task)
            if dependence is not None:
                lines += ["", f"### {task}: retrieval dependence", "",
                          dependence_caption(board, task) + ".", "", table(dependence)]
        return [write_published(out_dir / "leaderboard.md", "\n".join(lines) + "\n")]


class CsvPublisher:
    """leaderboard.csv (every task's table, raw numbers) and overview.csv."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        import pandas as pd

        frames = []
        for task, meta in board.tasks.items():
            frame = board.tables[task].reset_index()
            frame.insert(0, "main_metric", meta["main_metric"])
            frame.insert(0, "kind", meta["kind"])
            frame.insert(0, "task", task)
            frames.append(frame)
        tables = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
        return [
            write_published(out_dir / "leaderboard.csv", tables.to_csv(index=False)),
            write_published(out_dir / "overview.csv", board.overview.to_csv()),
        ]


class JsonPublisher:
    """leaderboard.json: the run's metadata and every table's raw numbers (NaN as null)."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        def records(frame) -> list[dict]:
            return [{key: _none_for_nan(value) for key, value in row.items()}
                    for row in frame.reset_index().to_dict(orient="records")]

        document = {
            "generated": GENERATED, "suite": board.suite, "suite_sha256": board.suite_sha256,
            "created": board.created, "baseline": board.baseline, "seeds": board.seeds,
            "systems": board.systems,
            "overview": records(board.overview),
            "tasks": {
                task: {"kind": meta["kind"], "main_metric": meta["main_metric"],
                       "metrics": board.metrics(task), "rows": records(board.tables[task])}
                for task, meta in board.tasks.items()
            },
        }
        text = json.dumps(document, indent=2, allow_nan=False, default=str)
        return [write_published(out_dir / "leaderboard.json", text + "\n")]


# ---------------------------------------------------------------------------------------
# Papers and pages
# ---------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in _one_line(text))
    return escaped.replace("±", r"$\pm$").replace("–", "--")


class LatexPublisher:
    """leaderboard.tex: booktabs tables of the overview and each task's compact table."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        from ravlm_bench.api import (
            dependence_caption,
            describe,
            display_dependence,
            display_overview,
            display_table,
        )

        def tabular(frame, caption: str) -> list[str]:
            frame = frame.reset_index()
            header = " & ".join(latex_escape(c) for c in frame.columns) + r" \\"
            body = [" & ".join(latex_escape(v) for v in row) + r" \\"
                    for row in frame.itertuples(index=False)]
            return [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                    r"\resizebox{\textwidth}{!}{%",
                    rf"\begin{{tabular}}{{l{'l' * (len(frame.columns) - 1)}}}",
                    r"\toprule", header, r"\midrule", *body, r"\bottomrule",
                    r"\end{tabular}}", r"\end{table}", ""]

        lines = [f"% {GENERATED}", r"% needs \usepackage{booktabs} and \usepackage{graphicx}",
                 f"% {latex_escape(describe(board))}", ""]
        lines += tabular(display_overview(board),
                         f"{board.suite}: main metric per task, mean ± std over seeds")
        for task, meta in board.tasks.items():
            lines += tabular(display_table(board, task, compact=True),
                             f"{task} ({meta['kind']}; main metric {meta['main_metric']})")
            dependence = display_dependence(board, task)
            if dependence is not None:
                lines += tabular(dependence, dependence_caption(board, task))
        return [write_published(out_dir / "leaderboard.tex", "\n".join(lines))]


class HtmlPublisher:
    """leaderboard.html: sortable, filterable tables, interval bars and the cost fronts
    (:mod:`ravlm_plugins.publishers.html_page`)."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        from ravlm_plugins.publishers.html_page import render_leaderboard

        return [write_published(out_dir / "leaderboard.html", render_leaderboard(board, GENERATED))]


class PngPublisher:
    """A bar chart per task of the main metric, error bars the mean 95% bootstrap CI, the
    bars ranked as the table ranks them and coloured by tier (each labelled "T<tier>").

    A task whose main metric has no interval gets ± one standard deviation over seeds
    instead, and says so on the axis.
    """

    def publish(self, board, out_dir: Path) -> list[Path]:
        # The object API with an explicit Agg canvas: no pyplot state, no display needed.
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        tasks = list(board.tasks)
        columns = min(3, max(1, len(tasks)))
        rows = max(1, math.ceil(len(tasks) / columns))
        figure = Figure(figsize=(4.2 * columns, 3.6 * rows), layout="constrained")
        FigureCanvasAgg(figure)
        for i, task in enumerate(tasks):
            axes = figure.add_subplot(rows, columns, i + 1)
            table, main = board.tables[task], board.main_metric(task)
            systems = list(table.index)  # the systems the suite ran on this task
            means = table[main].to_numpy(dtype=float)
            lo = table[f"{main}_ci95_lo"].to_numpy(dtype=float)
            hi = table[f"{main}_ci95_hi"].to_numpy(dtype=float)
            has_ci = bool(np.isfinite(lo).any())
            if has_ci:
                errors = np.vstack([means - lo, hi - means])
                label = f"{main} (95% CI)"
            else:
                std = table[f"{main}_std"].to_numpy(dtype=float)
                errors = np.vstack([std, std])
                label = f"{main} (± std)"
            # no error bar where there is no mean (a failed system); NaN bars are not drawn
            errors = np.where(np.isfinite(means), np.nan_to_num(np.clip(errors, 0, None)),
                              np.nan)
            heights = np.nan_to_num(means)
            x = np.arange(len(systems))
            tier = (table["tier"].to_numpy(dtype=float) if "tier" in table.columns
                    else np.full(len(systems), np.nan))
            colours = [TIER_COLOURS[int(t - 1) % len(TIER_COLOURS)] if np.isfinite(t)
                       else "#999999" for t in tier]
            axes.bar(x, heights, yerr=errors, capsize=4, color=colours)
            for j, system in enumerate(systems):
                if np.isfinite(tier[j]):
                    inside = heights[j] >= 0.15  # a short bar gets its label above it
                    y = heights[j] / 2 if inside else heights[j] + np.nan_to_num(errors[1, j])
                    axes.text(j, y, f"T{tier[j]:.0f}", ha="center",
                              va="center" if inside else "bottom",
                              color="white" if inside else "black", fontsize=8,
                              fontweight="bold")
                if math.isnan(means[j]):
                    axes.text(j, 0.02, table.loc[system, "status"], ha="center", va="bottom",
                              rotation=90, color="#b00020", fontsize=8)
            axes.set_xticks(x, systems, rotation=30, ha="right")
            axes.set_ylim(0, max(1.0, float(np.nanmax(heights + np.nan_to_num(errors[1]),
                                                       initial=0))))
            axes.set_title(task)
            axes.set_ylabel(label)
        figure.suptitle(f"{board.suite}: mean over seeds {', '.join(map(str, board.seeds))}")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120)
        return [write_published(out_dir / "leaderboard.png", buffer.getvalue())]
