"""dependence.png: each task's retrieval-dependence curves.

One panel per task where some system measured its retrieval dependence: x is the share p
of each test query's retrieved items replaced by random knowledge-base items (0, 0.25,
0.5, 0.75, 1), y the task's main metric (the mean over seeds), one line per system that
measured it, labelled with its dependence (p=0 minus p=1) and that difference's paired
95% interval. The main metric with nothing retrieved ("none") is a hollow marker of the
system's colour to the right of p=1. A board where no system measured a dependence gets a
chart that says so, as ``fronts.png`` does for a run without retrieval costs.

:func:`dependence_rows`, :func:`curve_values` and :func:`dependence_label` are shared with
the explorer's dependence panel (:mod:`.explorer_page`), so both show the same numbers.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from ravlm_plugins.publishers._files import write_published

NONE_X = 1.15        # where the "none" (nothing retrieved) marker sits, right of p=1
# line styles cycle more slowly than colours, so systems with identical curves stay apart
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def dependence_rows(board, task: str):
    """``task``'s table (seed means) restricted to the systems that measured their
    retrieval dependence, in the table's ranked order; None when none did."""
    from ravlm_bench.api import DEPENDENCE_METRIC

    table = board.tables[task]
    if DEPENDENCE_METRIC not in table.columns or not table[DEPENDENCE_METRIC].notna().any():
        return None
    return table[table[DEPENDENCE_METRIC].notna()]


def tasks_with_dependence(board) -> list[str]:
    """The tasks where at least one system measured its retrieval dependence."""
    return [task for task in board.tasks if dependence_rows(board, task) is not None]


def curve_values(row) -> dict[str, float | None]:
    """A table row's curve: the main metric at each of ``DEPENDENCE_LEVELS`` (None where
    missing)."""
    from ravlm_bench.api import DEPENDENCE_LEVELS

    return {level: number_or_none(row.get(f"dependence_{level}")) for level in DEPENDENCE_LEVELS}


def curve_points(row) -> tuple[list[tuple[float, float]], float | None]:
    """A table row's curve to draw: the (p, main metric) points it has, and its value with
    nothing retrieved (None when missing)."""
    values = curve_values(row)
    from ravlm_bench.api import level_share

    points = [(level_share(level), value) for level, value in values.items()
              if level != "none" and value is not None]
    return points, values.get("none")


def dependence_label(row) -> str:
    """``0.255 [0.201, 0.304]``: a row's dependence and its 95% interval (when it has one)."""
    from ravlm_bench.api import DEPENDENCE_METRIC

    value = number_or_none(row.get(DEPENDENCE_METRIC))
    lo = number_or_none(row.get(f"{DEPENDENCE_METRIC}_ci95_lo"))
    hi = number_or_none(row.get(f"{DEPENDENCE_METRIC}_ci95_hi"))
    text = "–" if value is None else f"{value:.3f}"
    if lo is not None and hi is not None:
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


def number_or_none(value) -> float | None:
    """``value`` as a float, or None when it is missing (None or NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _draw_task(axes, board, task: str) -> None:
    """One task's panel: a line per system that measured its dependence, "none" apart."""
    from matplotlib import colormaps

    rows = dependence_rows(board, task)
    colours = colormaps["tab10"].colors
    values = []
    for i, (system, row) in enumerate(rows.iterrows()):
        points, none = curve_points(row)
        colour = colours[i % len(colours)]
        style = dict(color=colour, marker=MARKERS[i % len(MARKERS)], markersize=4)
        if points:
            axes.plot([p for p, _ in points], [v for _, v in points],
                      linestyle=LINE_STYLES[(i // len(colours)) % len(LINE_STYLES)],
                      linewidth=1.2, label=f"{system} ({dependence_label(row)})", **style)
        if none is not None:
            axes.plot([NONE_X], [none], linestyle="none", markerfacecolor="white", **style)
        values += [v for _, v in points] + ([none] if none is not None else [])
    axes.axvline((1 + NONE_X) / 2, color="#bbbbbb", linewidth=0.8, linestyle=":")
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1, NONE_X], ["0", "0.25", "0.5", "0.75", "1", "none"])
    axes.set_xlim(-0.05, NONE_X + 0.07)
    # the metrics live in [0, 1]; a plugin's metric outside it still shows whole
    axes.set_ylim(min(0.0, *values), max(1.0, *values) * 1.02)
    axes.set_title(task, fontsize=10)
    axes.set_xlabel("share p of retrieved items replaced by random ones", fontsize=8)
    axes.set_ylabel(board.main_metric(task), fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(True, color="#eeeeee", linewidth=0.6)
    # below the panel: ten systems would hide the curves inside it
    axes.legend(title="system (dependence [95% CI])", title_fontsize=7, fontsize=6,
                loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1, frameon=False)


def render_dependence(board, tasks: list[str]) -> bytes:
    """The chart of ``tasks`` (each with a dependence) as PNG bytes."""
    # The object API with an explicit Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(3, len(tasks)))
    rows = max(1, math.ceil(len(tasks) / columns))
    most = max((len(dependence_rows(board, task)) for task in tasks), default=0)  # legend
    figure = Figure(figsize=(4.6 * columns, rows * (3.4 + 0.13 * most)), layout="constrained")
    FigureCanvasAgg(figure)
    for i, task in enumerate(tasks):
        _draw_task(figure.add_subplot(rows, columns, i + 1), board, task)
    if not tasks:
        axes = figure.add_subplot(1, 1, 1)
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no system measured its retrieval dependence\n(the suite's [run] "
                            "retrieval_dependence = false, or no fusion-head task)",
                  ha="center", va="center")
    figure.suptitle(f"{board.suite}: retrieval dependence, main metric as retrieved items are "
                    f"corrupted (hollow: nothing retrieved); mean over seeds "
                    f"{', '.join(map(str, board.seeds))}", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


class DependencePublisher:
    """dependence.png (see the module docstring)."""

    def publish(self, board, out_dir: Path) -> list[Path]:
        tasks = tasks_with_dependence(board)
        return [write_published(out_dir / "dependence.png", render_dependence(board, tasks))]
