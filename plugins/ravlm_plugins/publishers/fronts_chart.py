"""fronts.png and fronts.svg: each task's main metric against what its retrieval costs.

One row per task with retrieval costs, one column per cost axis, each panel drawn with
matplotlib from :func:`ravlm_bench.api.front_chart` (the chart the HTML page draws as
inline SVG): error bars are the 95% interval; the Pareto front is drawn as a step line
through its points (filled), sweeps as connected lines with their values written beside
each point. Tasks without retrieval costs are left out and named in the title.
"""

from __future__ import annotations

import io
from pathlib import Path

from ravlm_plugins.publishers._files import write_published

FRONT_COLOUR, OTHER_COLOUR, SWEEP_COLOUR = "#c44e52", "#4c72b0", "#55a868"
# memory reads better in MiB than in bytes with a 1e7 offset
DISPLAY_UNITS = {"index_memory_bytes": (2.0 ** 20, "index memory (MiB)")}


def _draw_axis(axes, board, task: str, axis) -> None:
    from ravlm_bench.api import front_chart

    chart = front_chart(board, task, axis.column)
    scale, label = DISPLAY_UNITS.get(axis.column, (1.0, axis.label))
    axes.set_title(f"{task}: {board.main_metric(task)} vs {axis.label.split(' (')[0]}",
                   fontsize=9)
    axes.set_xlabel(label + (" (higher is better)" if axis.higher_is_better
                                  else " (lower is better)"), fontsize=8)
    axes.set_ylabel(f"{board.main_metric(task)} (95% CI)", fontsize=8)
    axes.tick_params(labelsize=7)
    if chart is None:
        axes.text(0.5, 0.5, "no system with this cost", ha="center", va="center",
                  transform=axes.transAxes, fontsize=8, color="#555")
        return
    _draw_points(axes, chart, scale)
    if len(chart.front) > 1:  # the corners of chart.front_steps(), as the HTML page draws
        axes.step([p.cost / scale for p in chart.front], [p.quality for p in chart.front],
                  where="post", color=FRONT_COLOUR, linewidth=1, alpha=0.7,
                  label="Pareto front")
    for series in chart.sweeps:
        axes.plot([p.cost / scale for p in series.points], [p.quality for p in series.points],
                  color=SWEEP_COLOUR, linestyle="--", linewidth=1,
                  label=f"sweep {series.base} ({series.swept})")
        for point in series.points:
            axes.annotate(point.sweep_value, (point.cost / scale, point.quality),
                          xytext=(4, -9), textcoords="offset points", fontsize=6,
                          color=SWEEP_COLOUR)
    if chart.log_scale:
        from matplotlib.ticker import NullFormatter

        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())  # the 2x10^6 labels overlap
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=6, loc="best")


def _draw_points(axes, chart, scale: float) -> None:
    """Each point with its interval, filled on the front, named unless a sweep's."""
    for point in chart.points:
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

    def publish(self, board, out_dir: Path) -> list[Path]:
        png, svg = render_fronts(board)
        return [write_published(out_dir / "fronts.png", png),
                write_published(out_dir / "fronts.svg", svg)]
