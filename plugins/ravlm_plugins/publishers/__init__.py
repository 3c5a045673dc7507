"""The reference leaderboard publishers, registered under ``register_publishers``.

Each factory returns an object with ``publish(board, out_dir) -> [paths]``. The tables
(:mod:`.tables`), the HTML page (:mod:`.html_page`, its fronts drawn by :mod:`.fronts_svg`),
the quality-against-cost charts (:mod:`.fronts_chart`), the retrieval-dependence curves
(:mod:`.dependence_chart`; nothing written when no system measured a dependence) and the
per-item explorer (:mod:`.explorer_page`, with each system's dependence beside its items)
each live in their own module; every file is written atomically (:mod:`._files`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ravlm_bench.api import hookimpl
from ravlm_plugins.publishers.dependence_chart import DependencePublisher
from ravlm_plugins.publishers.explorer_page import ExplorerPublisher
from ravlm_plugins.publishers.fronts_chart import FrontsPublisher
from ravlm_plugins.publishers.tables import (
    CsvPublisher,
    HtmlPublisher,
    JsonPublisher,
    LatexPublisher,
    MarkdownPublisher,
    PngPublisher,
)

PUBLISHERS = {
    "markdown": (MarkdownPublisher, "Markdown tables (leaderboard.md), for a README"),
    "csv": (CsvPublisher, "CSV (leaderboard.csv, overview.csv), for tools"),
    "json": (JsonPublisher, "JSON (leaderboard.json), every number and the run's metadata"),
    "latex": (LatexPublisher, "LaTeX booktabs tables (leaderboard.tex), for papers"),
    "html": (HtmlPublisher, "one self-contained HTML page (leaderboard.html)"),
    "png": (PngPublisher, "bar chart of each task's main metric with CIs (leaderboard.png)"),
    "fronts": (FrontsPublisher, "quality against retrieval cost with Pareto fronts "
                                "(fronts.png, fronts.svg)"),
    "dependence": (DependencePublisher, "retrieval dependence curves: each task's main "
                                        "metric as retrieved items are corrupted "
                                        "(dependence.png)"),
    "explorer": (ExplorerPublisher, "per-item explorer of predictions and retrieved "
                                    "neighbours (explorer.html)"),
}


@dataclass
class NoOptions:
    """A publisher is created without parameters (``register_publishers``)."""


@hookimpl
def register_publishers(register) -> None:
    for name, (cls, description) in PUBLISHERS.items():
        register(name, cls, description=description, options=NoOptions)
