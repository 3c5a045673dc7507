"""fronts.png and fronts.svg: each task's main metric against what its retrieval costs.

One row per task with retrieval costs, one column per cost axis; error bars are the 95%
interval; the Pareto front is drawn as a step line through its points (filled), sweeps as
connected lines with their values written beside each point. Tasks without retrieval costs
are left out and named in a note under the chart.
"""

from __future__ import annotations

import io
from pathlib import Path

from ravlm_plugins.publishers._files import write_published

FRONT_COLOUR, OTHER_COLOUR, SWEEP_COLOUR = "#c44e52", "#4c72b0", "#55a868"
# memory reads better in MiB than in bytes with a 1e7 offset
DISPLAY_UNITS = {"index_memory_bytes": (2.0 ** 20, "index memory (MiB)")}


def _draw_axis(axes, board, task: str, axis) -> None:
    from matplotlib.ticker import NullFormatter

    from ravlm_bench.api import front_line, front_points, sweep_series, uses_log_scale

    points = front_points(board, task, axis.column)
    main = board.main_metric(task)
    scale, label = DISPLAY_UNITS.get(axis.column, (1.0, axis.label))
    axes.set_title(f"{task}: {main} vs {axis.label.split(' (')[0]}", fontsize=9)
    axes.set_xlabel(label + (" (higher is better)" if axis.higher_is_better
                                  else " (lower is better)"), fontsize=8)
    axes.set_ylabel(f"{main} (95% CI)", fontsize=8)
    axes.tick_params(labelsize=7)
    if not points:
        axes.text(0.5, 0.5, "no system with this cost", ha="center", va="center",
                  transform=axes.transAxes, fontsize=8, color="#555")
        return
    for point in points:
        has_ci = point.quality_lo == point.quality_lo  # not NaN
        error = [[max(0.0, point.quality - point.quality_lo)],
                 [max(0.0, point.quality_hi - point.quality)]] if has_ci else None
        colour = FRONT_COLOUR if point.on_front else OTHER_COLOUR
        axes.errorbar([point.cost / scale], [point.quality], yerr=error, fmt="o", color=colour,
                      markerfacecolor=colour if point.on_front else "white", capsize=3,
                      markersize=5, linewidth=1)
        if point.sweep_base is None:  # a sweep's points carry their values instead
            axes.annotate(point.system, (point.cost / scale, point.quality), xytext=(4, 4),
                          textcoords="offset points", fontsize=6, color="#333")
    front = front_line(points)
    if len(front) > 1:
        axes.step([p.cost / scale for p in front], [p.quality for p in front], where="post",
                  color=FRONT_COLOUR, linewidth=1, alpha=0.7, label="Pareto front")
    for series in sweep_series(points):
        swept = ", ".join(name.rsplit(".", 1)[-1] for name, _ in series.points[0].sweep_values)
        axes.plot([p.cost / scale for p in series.points], [p.quality for p in series.points],
                  color=SWEEP_COLOUR, linestyle="--", linewidth=1,
                  label=f"sweep {series.base} ({swept})")
        for point in series.points:
            axes.annotate(point.sweep_value, (point.cost / scale, point.quality),
                          xytext=(4, -9), textcoords="offset points", fontsize=6,
                          color=SWEEP_COLOUR)
    if uses_log_scale(axis.column, [p.cost for p in points]):
        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())  # the 2x10^6 labels overlap
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=6, loc="best")


def render_fronts(board) -> tuple[bytes, bytes]:
    """The chart as (PNG, SVG) bytes."""
    # The object API with an explicit Agg canvas: no pyplot state, no display needed.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ravlm_bench.api import COST_AXES, tasks_with_costs

    tasks = tasks_with_costs(board)
    skipped = [task for task in board.tasks if task not in tasks]
    rows = max(1, len(tasks))
    figure = Figure(figsize=(4.2 * len(COST_AXES), 3.4 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    if not tasks:
        axes = figure.add_subplot(1, 1, 1)
        axes.axis("off")
        axes.text(0.5, 0.5, "no task records retrieval costs", ha="center", va="center")
    for i, task in enumerate(tasks):
        for j, axis in enumerate(COST_AXES):
            _draw_axis(figure.add_subplot(rows, len(COST_AXES), i * len(COST_AXES) + j + 1),
                       board, task, axis)
    title = f"{board.suite}: quality against cost (filled: on the Pareto front)"
    if skipped:
        title += "\nnot shown, without retrieval costs: " + ", ".join(skipped)
    figure.suptitle(title, fontsize=10)
    png, svg = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png", dpi=110)
    # no date and ids from a fixed salt, so an unchanged run renders the same bytes
    with rc_context({"svg.hashsalt": "ravlm-bench"}):
        figure.savefig(svg, format="svg", metadata={"Date": None})
    return png.getvalue(), svg.getvalue()


class FrontsPublisher:
    """fronts.png and fronts.svg (see the module docstring)."""

    suffix = "png"

    def publish(self, board, out_dir: Path) -> list[Path]:

        png, svg = render_fronts(board)
        return [write_published(out_dir / "fronts.png", png),
                write_published(out_dir / "fronts.svg", svg)]
