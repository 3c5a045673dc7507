"""The runner: every (task, system, seed) cell of a suite, resumable and failure-tolerant.
It checks the suite against the registry (:mod:`~ravlm_bench.config.preflight`) and every
data directory first, then prepares each task once (its dataset opened, its splits built,
undecodable images dropped where the dataset skips them, its systems' external knowledge
bases read, the data checked against the suite and audited for leakage, a feature store
set up) and runs each cell (:mod:`~ravlm_bench.run.cells`), which the ledger
(:mod:`~ravlm_bench.store.ledger`) writes atomically: a killed run resumes where it
stopped, and a cell that raises is recorded as failed, with the plugin and the message,
while the suite goes on. Under torchrun every rank runs the same cells in lockstep. As
cells finish it logs the time left (:class:`TimeLeft`), per-cell work kept apart from the
one-off work of the first cells.
"""

from __future__ import annotations

import functools
import logging
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.config.preflight import check_against_data, check_suite
from ravlm_bench.config.suite import ComponentSpec, Suite, TaskSpec
from ravlm_bench.foundation.distributed import SINGLE, DistContext, broadcast_object
from ravlm_bench.foundation.version import __version__
from ravlm_bench.plugin_host.contracts import capability
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.run.cells import run_cell
from ravlm_bench.run.pipeline import CellContext
from ravlm_bench.scoring.dependence import DEPENDENCE_METRIC, dependence_metric
from ravlm_bench.scoring.evaluation import Metric, Resampler, task_declaration
from ravlm_bench.stages.bad_images import drop_undecodable, pixel_limit
from ravlm_bench.stages.components import ComponentFactory, guard
from ravlm_bench.stages.data_sources import DataSources
from ravlm_bench.stages.execution import execution_for, one_line, stops_run
from ravlm_bench.stages.external_knowledge import ExternalKnowledge, external_items
from ravlm_bench.stages.features import FeatureStore
from ravlm_bench.stages.leakage import audit_leakage
from ravlm_bench.store.ledger import RunLedger
from ravlm_bench.store.run_dir import environment_versions

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_dir: Path
    done: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str, int]] = field(default_factory=list)
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


@dataclass
class PreparedTask:
    """What every cell of a task shares."""

    task: Any  # a Component holding the task
    data: Any
    features: FeatureStore
    declaration: dict
    # system -> its external knowledge base
    knowledge: dict[str, ExternalKnowledge] = field(default_factory=dict)


class Runner:
    def __init__(self, registry: Registry, suite: Suite, run_dir: Path, *, force: bool = False,
                 retrain: bool = False, progress: bool = True, feature_cache=None,
                 dist: DistContext = SINGLE):
        from ravlm_bench.store.feature_cache import FeatureCache

        check_suite(suite, registry)
        self.registry = registry
        self.suite = suite
        self.force = force or retrain
        self.retrain = retrain
        self.progress = progress
        self.cache = feature_cache or FeatureCache()
        self.factory = ComponentFactory(registry)
        self.execution = execution_for(dist)
        self.ledger = RunLedger(run_dir, writes=self.execution.is_main)
        self.sources = DataSources(self.suite, self.factory)
        self.resampler = Resampler()
        self.learned_keys: dict = {}  # trained retrieval keys, shared across a run's cells
        self.distractors: dict = {}  # the latest distractors and exact results, likewise
        self._knowledge: dict = {}  # (task, KnowledgeSpec) -> external knowledge base

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        self._check_data()
        with self.ledger.locked():
            return self._run()

    def _run(self) -> RunSummary:
        summary = RunSummary(self.ledger.root)
        cells = [(t, s, seed) for t in self.suite.tasks for s in t.systems
                 for seed in self.suite.seeds]
        if self.retrain and self.execution.is_main:
            # --force alone reloads finished trainings whose signature matches (same data,
            # hyperparameters, seed, code); --retrain starts every training afresh
            shutil.rmtree(self.ledger.root / "checkpoints", ignore_errors=True)
        self.ledger.start(self.suite, environment_versions(self.registry.pm.sources))
        # rank 0 decides what is finished: every rank must run the same cells in lockstep
        finished = broadcast_object(self.execution.dist, [
            not self.force and self.ledger.finished(t.name, s, seed) is not None
            for t, s, seed in cells] if self.execution.is_main else None)
        # every task's data is built (and checked against the suite) before any encoding
        pending = {t.name for (t, _, _), done in zip(cells, finished, strict=True) if not done}
        prepared = {t.name: self._prepare_or_error(t) for t in self.suite.tasks
                    if t.name in pending}
        bar = _progress_bar(len(cells), enabled=self.progress and self.execution.is_main)
        time_left = TimeLeft([t.name for (t, _, _), done in zip(cells, finished, strict=True)
                              if not done])
        for position, ((task_spec, system_name, seed), done) in enumerate(
                zip(cells, finished, strict=True), start=1):
            label = f"{task_spec.name} / {system_name} / seed {seed}"
            if done:
                summary.skipped.append((task_spec.name, system_name, seed))
                bar.update(1)
                continue
            bar.set_postfix_str(f"{label}: running", refresh=True)
            time_left.start_cell()
            error, timings = None, None
            try:
                ready = prepared[task_spec.name]
                if isinstance(ready, BaseException):
                    raise ready
                timings = self._run_cell(
                    task_spec, system_name, seed, ready,
                    on_stage=lambda stage, label=label: bar.set_postfix_str(
                        f"{label}: {stage}", refresh=True))
            except Exception as exc:  # one broken cell never stops the suite
                error = exc
                log.debug("%s", traceback.format_exc())
            self.execution.agree_on_outcome(label, error)
            if error is None:
                summary.done.append((task_spec.name, system_name, seed))
            else:
                message = one_line(error)
                if self.execution.is_main:  # every rank failed alike; one report is enough
                    log.error("%s failed: %s", label, message)
                self._write_failed(task_spec, system_name, seed, error)
                summary.failed.append((task_spec.name, system_name, seed, message))
            time_left.finish_cell(task_spec.name, timings)  # None: it failed
            if error is None:
                log.info("[%d/%d] %s done; %s", position, len(cells), label, time_left.text())
            bar.update(1)
        bar.close()
        return summary

    # -- stages -----------------------------------------------------------------------------

    def _check_data(self) -> None:
        """Stop before any cell when a task's data directory is missing: one clear error
        instead of the same failure in every cell."""
        for task_spec in self.suite.tasks:
            try:
                dataset_name = self._task(task_spec).obj.dataset
            except Exception:  # a broken task fails its own cells, later
                continue
            self.sources.check(dataset_name)
        for system in self.suite.systems.values():
            if system.knowledge is not None:
                self.sources.check(system.knowledge.dataset)

    def _task(self, task_spec: TaskSpec):
        return self.factory.create("tasks", ComponentSpec(task_spec.name, task_spec.params))

    def _prepare_or_error(self, task_spec: TaskSpec) -> PreparedTask | Exception:
        """The task prepared, or the error its cells will report (a broken plugin); bad
        data or configuration stops the run (exit 2) before anything is encoded."""
        try:
            return self._prepare(task_spec)
        except Exception as exc:
            if stops_run(exc):
                raise
            log.debug("%s", traceback.format_exc())
            return exc

    def _prepare(self, task_spec: TaskSpec) -> PreparedTask:
        """Create the task and its dataset and build the task's data (shared by its cells)."""
        task = self._task(task_spec)
        with guard(task, "declaring its metrics"):
            declaration = task_declaration(task.obj)
            dataset_name = task.obj.dataset
        if self._measures_dependence(task_spec, declaration):
            main = next(Metric.from_dict(m) for m in declaration["metrics"]
                        if m["name"] == declaration["main_metric"])
            declaration["metrics"].append(dependence_metric(main).as_dict())
        entry = {**declaration, "systems": list(task_spec.systems)}
        self.ledger.record_task(task_spec.name, entry)
        dataset = self.execution.main_first(lambda: self.sources.dataset(dataset_name))
        data_seed = self.suite.run.data_seed
        with guard(task, "build"):
            data = task.obj.build(dataset.obj, data_seed)
        skipped: dict[str, str] = {}
        if capability(dataset.obj, "datasets", "skips_bad_images"):
            decodable = self.execution.main_first_value(
                lambda: drop_undecodable(task_spec.name, data, self.progress,
                                         pixel_limit(dataset.obj)))
            data, skipped = decodable.data, decodable.dropped
        knowledge = self._external_knowledge(task_spec, dataset, data)
        check_against_data(self.suite, self.registry, task_spec, data,
                           {name: len(base.items) for name, base in knowledge.items()})
        with guard(dataset, "fingerprint"):
            fingerprint = f"{dataset.obj.fingerprint()}-{task_spec.name}-{data_seed}"
        if self.execution.is_main:
            audit_leakage(task_spec.name, data)
        features = FeatureStore(fingerprint, self.cache, progress=self.progress,
                                dist=self.execution.dist,
                                max_image_pixels=pixel_limit(dataset.obj))
        entry.update(_sizes(data), skipped_images=len(skipped))
        self.ledger.record_task(task_spec.name, entry)
        return PreparedTask(task, data, features, entry, knowledge)

    def _measures_dependence(self, task_spec: TaskSpec, declaration: dict) -> bool:
        """Whether the task's cells measure the retrieval dependence: the suite asks for it,
        the task has fusion heads and one of its systems retrieves."""
        return (self.suite.run.retrieval_dependence and declaration["head"] == "fusion-head"
                and any(self.suite.systems[s].retriever is not None for s in task_spec.systems))

    def _external_knowledge(self, task_spec: TaskSpec, dataset,
                            data) -> dict[str, ExternalKnowledge]:
        """The external knowledge bases the task's systems name, each read once."""
        wanted = {name: spec for name in task_spec.systems
                  if (spec := self.suite.systems[name].knowledge) is not None}
        if not wanted:
            return {}
        task_images = _task_images(dataset, data)
        out = {}
        for name, spec in wanted.items():
            memo = (task_spec.name, spec)
            if memo not in self._knowledge:
                source = self.execution.main_first(
                    functools.partial(self.sources.dataset, spec.dataset))
                with guard(source, f"reading split {spec.split!r} as a knowledge base"):
                    items = external_items(spec, source.obj, task_images)
                    fingerprint = f"{source.obj.fingerprint()}-knowledge-{spec.split}"
                store = FeatureStore(fingerprint, self.cache, progress=self.progress,
                                     dist=self.execution.dist,
                                     max_image_pixels=pixel_limit(source.obj))
                self._knowledge[memo] = ExternalKnowledge(items, store)
            out[name] = self._knowledge[memo]
        return out

    def _run_cell(self, task_spec: TaskSpec, system_name: str, seed: int,
                  ready: PreparedTask, on_stage=None) -> dict[str, float]:
        """Run and record one cell; its stage timings."""
        system = self.suite.systems[system_name]
        context = CellContext(factory=self.factory, features=ready.features,
                              metric=self.suite.metric, execution=self.execution,
                              resampler=self.resampler, on_stage=on_stage,
                              learned_keys=self.learned_keys, distractors=self.distractors,
                              knowledge=ready.knowledge.get(system_name),
                              retrieval_dependence=any(
                                  m["name"] == DEPENDENCE_METRIC
                                  for m in ready.declaration["metrics"]),
                              cache_indexes=self.suite.run.cache_indexes)
        checkpoint_dir = (self.ledger.root / "checkpoints" / task_spec.name / system_name
                          / f"seed-{seed}")
        result = run_cell(ready.task, ready.data, system, seed, context, checkpoint_dir)
        evaluation = result.evaluation
        units = {"resamples": self.resampler.n_resamples, "resample_seed": self.resampler.seed}
        record = self._record_base(task_spec.name, system_name, seed)
        record.update(
            status="ok", error=None,
            metrics={**_jsonable(evaluation.metrics),
                     "ci95": _intervals(evaluation, ready.declaration)},
            details={**_jsonable(evaluation.details),
                     "skipped_images": ready.declaration.get("skipped_images", 0)},
            bootstrap=units,
            cost=result.cost, timings=result.timings, training=_jsonable(result.training),
            retrieval=result.retrieval, knowledge=result.knowledge,
            task_declaration=ready.declaration)
        record["provenance"]["components"] = result.components
        record["provenance"]["world_size"] = self.execution.world_size
        self.ledger.write_cell(record, evaluation)
        return result.timings

    # -- records ----------------------------------------------------------------------------

    def _record_base(self, task: str, system: str, seed: int) -> dict:
        return {
            "task": task, "system": system, "seed": seed,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": {"suite": self.suite.name, "suite_sha256": self.suite.sha256,
                           "ravlm_bench": __version__, "seed": seed,
                           "versions": environment_versions(self.registry.pm.sources),
                           "system": self.suite.systems[system].components()},
        }

    def _write_failed(self, task_spec: TaskSpec, system: str, seed: int, exc: Exception):
        if task_spec.name not in self.ledger.run["tasks"]:
            # the task could not even declare itself: its failed cells still need a table
            self.ledger.record_task(task_spec.name, {
                "head": None, "targets": None, "metrics": [], "main_metric": None,
                "systems": list(task_spec.systems)})
        record = self._record_base(task_spec.name, system, seed)
        plugin = getattr(exc, "plugin", None)
        record.update(status="failed", metrics={}, cost={}, timings={},
                      error={"plugin": plugin, "type": type(exc).__name__,
                             "message": one_line(exc)})
        self.ledger.write_cell(record, None)


def _task_images(dataset, data):
    """The task's images (every split) with their cross ids and paths, for the guard."""
    import pandas as pd

    ids = np.unique(np.concatenate([np.asarray(getattr(data, role).image_ids)
                                    for role in ("train", "val", "test")
                                    if getattr(data, role, None) is not None]))
    tables = [dataset.obj.table("images", split).to_pandas() for split in dataset.obj.splits()]
    images = pd.concat(tables, ignore_index=True)
    return images[images["image_id"].isin(ids)].reset_index(drop=True)


def _sizes(data) -> dict:
    sizes = {}
    for role in ("train", "val", "test"):
        split = getattr(data, role, None)
        if split is not None:
            sizes[role] = len(split)
            if hasattr(split, "caption_image"):
                sizes[f"{role}_captions"] = len(split.texts)
    out: dict[str, Any] = {"sizes": sizes}
    if hasattr(data, "classes"):
        out["classes"] = list(data.classes)
    return out


def _intervals(evaluation, declaration: dict) -> dict:
    """Each bootstrapped metric's 95% interval in this cell, by its declared method."""
    from ravlm_bench.scoring.resampling import interval

    methods = {m["name"]: m.get("interval", "percentile") for m in declaration["metrics"]}
    return {name: interval(values, evaluation.metrics.get(name), methods.get(name, "percentile"))
            for name, values in evaluation.replicates.items()}


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=lambda v: getattr(v, "item", lambda: str(v))()))


class TimeLeft:
    """The time a run has left, with one-off work kept apart from per-cell work.

    The first cells of a task pay for work the later ones reuse: encoding (its features
    are cached) and training a learned retrieval key (shared by the task's systems); these
    are the :data:`ONE_OFF_STAGES`. A cell whose one-off stages took at most
    :data:`STEADY_SHARE` of its wall time ran steady: every cell to come pays what it paid
    (retrieval, index, head training, prediction, evaluation, writing). The estimate is
    the mean wall time of the steady cells times the cells left, plus, for each task with
    cells left that has not started, the mean one-off time of the tasks that have; until
    two cells have run steady it says "estimating". Failed and skipped cells inform
    nothing but the count.
    """

    ONE_OFF_STAGES = ("encode_s", "retrieval_key_s")
    STEADY_SHARE = 0.1

    def __init__(self, pending: Sequence[str], clock: Callable[[], float] = time.monotonic):
        """``pending``: the task of each cell this run will run, skipped ones left out."""
        self._left = Counter(pending)  # task -> its cells still to run
        self._clock = clock
        self._started = clock()
        self._steady: list[float] = []  # wall time of each steady cell
        self._one_off: dict[str, float] = {}  # task -> what its cells spent on one-off work
        self._begun: set[str] = set()  # tasks with a cell run, failed or not

    def start_cell(self) -> None:
        self._started = self._clock()

    def finish_cell(self, task: str, timings: Mapping[str, float] | None) -> None:
        """A cell of ``task`` ended: its stage timings, or None when it failed."""
        wall = self._clock() - self._started
        self._left[task] -= 1
        self._begun.add(task)
        if timings is None:
            return
        one_off = sum(float(timings.get(stage, 0.0)) for stage in self.ONE_OFF_STAGES)
        self._one_off[task] = self._one_off.get(task, 0.0) + one_off
        if one_off <= self.STEADY_SHARE * wall:
            self._steady.append(wall)

    def seconds(self) -> float | None:
        """The estimate in seconds, or None while there is too little to go on."""
        cells_left = sum(max(n, 0) for n in self._left.values())
        if not cells_left:
            return 0.0
        if len(self._steady) < 2:
            return None
        per_cell = sum(self._steady) / len(self._steady)
        unbegun = sum(1 for task, n in self._left.items() if n > 0 and task not in self._begun)
        one_off = (sum(self._one_off.values()) / len(self._one_off)) if self._one_off else 0.0
        return per_cell * cells_left + one_off * unbegun

    def text(self) -> str:
        left = self.seconds()
        if left is None:
            return "estimating time left"
        if left < 90:
            return f"about {left:.0f} s left"
        if left < 90 * 60:
            return f"about {left / 60:.1f} min left"
        return f"about {left / 3600:.1f} h left"


class _NullBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cell", desc="suite", dynamic_ncols=True)
