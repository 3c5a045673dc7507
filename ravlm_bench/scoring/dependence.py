"""Retrieval dependence: how much a system's score rests on what it retrieves.

A cell's test queries are scored again with a fraction ``p`` of their retrieved items
replaced by random knowledge-base items (the corruption levels), and with nothing retrieved.
The **retrieval dependence** is the main metric at ``p = 0`` minus the main metric at
``p = 1``: near 0 for a system that ignores its retrieval (or retrieves at random already),
large for one whose answers come from it. Every level is scored by the task's own
``evaluate`` on the run's shared resamples, so the dependence's resample ``b`` is the paired
difference of the two levels on resample ``b``: its interval is a paired bootstrap interval,
pooled over seeds and widened by the seeds' variance like every other metric's.
"""

from __future__ import annotations

import numpy as np

from ravlm_bench.scoring.evaluation import Evaluation, Metric

DEPENDENCE_METRIC = "retrieval_dependence"
CORRUPTION_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)  # shares p of retrieved items replaced
NO_RETRIEVAL = "none"  # the level with nothing retrieved


def level_name(p: float) -> str:
    """A corruption level as cells and tables name it: ``"p0.25"``."""
    return f"p{p:g}"


def level_share(level: str) -> float | None:
    """The share p a level name stands for (``"p0.25"`` -> 0.25); None for
    :data:`NO_RETRIEVAL`."""
    return None if level == NO_RETRIEVAL else float(level.removeprefix("p"))


def level_label(level: str) -> str:
    """A level as a table header: ``"p=0.25"``, or ``"none"``."""
    share = level_share(level)
    return NO_RETRIEVAL if share is None else f"p={share:g}"


# every level in order, as cells record the curve (``dependence_<level>``)
DEPENDENCE_LEVELS = (*map(level_name, CORRUPTION_LEVELS), NO_RETRIEVAL)
UNCORRUPTED, FULLY_CORRUPTED = level_name(0.0), level_name(1.0)


def dependence_metric(main: Metric) -> Metric:
    """The declaration of the dependence metric of a task whose main metric is ``main``:
    resampled as ``main`` is."""
    return Metric(DEPENDENCE_METRIC, higher_is_better=main.higher_is_better,
                  bootstrap=main.bootstrap)


def add_dependence(evaluation: Evaluation, variants: dict[str, Evaluation],
                   main: str) -> dict[str, float | None]:
    """Add :data:`DEPENDENCE_METRIC` (``main`` uncorrupted minus fully corrupted, with its
    paired resamples) to ``evaluation``, the uncorrupted cell's; return the curve, ``main``
    at every level (``evaluation``'s as :data:`UNCORRUPTED`, ``variants`` by their names).

    :param variants: the task's evaluations of the corrupted predictions, by level name;
        one of them :data:`FULLY_CORRUPTED`.
    """
    curve = {UNCORRUPTED: evaluation.metrics.get(main),
             **{name: v.metrics.get(main) for name, v in variants.items()}}
    clean, corrupt = curve[UNCORRUPTED], curve[FULLY_CORRUPTED]
    evaluation.metrics[DEPENDENCE_METRIC] = (
        None if clean is None or corrupt is None else float(clean - corrupt))
    clean_resamples = evaluation.replicates.get(main)
    corrupt_resamples = variants[FULLY_CORRUPTED].replicates.get(main)
    if clean_resamples is not None and corrupt_resamples is not None:
        evaluation.replicates[DEPENDENCE_METRIC] = (
            np.asarray(clean_resamples, np.float64) - np.asarray(corrupt_resamples, np.float64))
    return curve
