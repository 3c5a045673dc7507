"""One cell of a suite: a (task, system, seed) run from features to an evaluation.

Data flows one way: task data -> features (cached) -> retrieval -> the head (trained) ->
outputs -> the task's evaluation. Which pipeline a cell runs is the head interface its task
declares (``task.head``): :mod:`~ravlm_bench.run.fusion_cell` gives a fusion head's class
scores, :mod:`~ravlm_bench.run.ranking_cell` a joint embedding's image-text rankings. The
cell then has the task evaluate them and returns a :class:`CellResult` for the runner to
record. How a step divides across processes is the
:class:`~ravlm_bench.stages.execution.Local` / ``Distributed`` wrapper's business, not the
pipeline's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ravlm_bench.config.suite import SystemSpec
from ravlm_bench.foundation.errors import ComponentError
from ravlm_bench.plugin_host.contracts import ContractViolation, TrainingReport, capability
from ravlm_bench.run.fusion_cell import run_fusion_cell
from ravlm_bench.run.pipeline import CellContext, PipelineOutput, StageClock
from ravlm_bench.run.ranking_cell import run_joint_embedding_cell
from ravlm_bench.scoring.dependence import add_dependence
from ravlm_bench.scoring.evaluation import Evaluation, main_metric
from ravlm_bench.stages.components import Component, guard

# head interface -> its pipeline
PIPELINES: dict[str, Callable[..., PipelineOutput]] = {
    "fusion-head": run_fusion_cell, "joint-embedding": run_joint_embedding_cell}


@dataclass
class CellResult:
    """What a finished cell hands the runner to record."""

    evaluation: Evaluation
    cost: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    retrieval: dict | None = None  # retrieval_diagnostics of the test queries
    knowledge: dict | None = None  # an external knowledge base: its size, what the guard found


def run_cell(task: Component, data, system: SystemSpec, seed: int, ctx: CellContext,
             checkpoint_dir: Path | None = None) -> CellResult:
    """Run the pipeline of the head interface ``task`` declares, and evaluate its outputs."""
    head_interface = capability(task.obj, "tasks", "head")
    pipeline = PIPELINES.get(head_interface)
    if pipeline is None:
        raise ComponentError(task.kind[:-1], task.name, task.plugin,
                             f"head interface {head_interface!r} is unknown; use one of "
                             f"{', '.join(PIPELINES)}")
    clock = StageClock(ctx.on_stage)
    out = pipeline(task, data, system, seed, ctx, clock, checkpoint_dir)
    with clock("evaluate"), guard(task, "evaluate"):
        evaluation = task.obj.evaluate(data, out.outputs, ctx.resampler)
        if not isinstance(evaluation, Evaluation):
            raise ContractViolation(f"evaluate returned {type(evaluation).__name__}, "
                                    f"expected an Evaluation")
    retrieval = out.retrieval
    if out.corrupted:
        with clock("evaluate"), guard(task, "evaluate"):
            retrieval = {**(retrieval or {}), **_dependence(task, data, evaluation, out, ctx)}
    if out.explore is not None:  # what each item saw and got, for `show` and the explorer
        threshold = evaluation.details.get("threshold", 0.5)
        evaluation.predictions.update(out.explore(threshold=float(threshold)))
    cost = {**out.cost, "train_s": training_cost(clock.timings.get("train_s", 0.0),
                                                 out.training)}
    return CellResult(evaluation=evaluation, cost=cost, timings=clock.finish(),
                      components=out.components, training=out.training.as_dict(),
                      retrieval=retrieval,
                      knowledge=ctx.knowledge.items.findings if ctx.knowledge else None)


def _dependence(task: Component, data, evaluation: Evaluation, out: PipelineOutput,
                ctx: CellContext) -> dict[str, float | None]:
    """Score the corrupted outputs with the task's evaluate, add the retrieval dependence to
    ``evaluation``; the main metric at every corruption level (``dependence_<level>``)."""
    main = main_metric(tuple(task.obj.metrics())).name
    variants = {name: task.obj.evaluate(data, outputs, ctx.resampler)
                for name, outputs in (out.corrupted or {}).items()}
    curve = add_dependence(evaluation, variants, main)
    return {f"dependence_{name}": value for name, value in curve.items()}


def training_cost(stage_seconds: float, training: TrainingReport) -> float:
    """The train stage's cost: its wall time now, with the loop's share replaced by what
    training took over all runs, so a resumed or reloaded training still shows its real
    cost. A report without timings (NaN) leaves the stage's wall time."""
    total, now = training.seconds, training.seconds_this_run
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (total, now)):
        return stage_seconds
    return max(stage_seconds - now, 0.0) + total
