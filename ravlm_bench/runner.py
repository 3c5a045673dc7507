"""The runner: every (task, system, seed) cell of a suite, resumable and failure-tolerant.

Each finished cell is written atomically to the run directory (:mod:`ravlm_bench.results`);
a rerun skips finished cells, so a killed run resumes where it stopped. A cell that raises
is recorded as failed, with the plugin and the message, and the suite goes on.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ravlm_bench import __version__
from ravlm_bench.cells import FeatureStore, run_classification_cell, run_retrieval_cell
from ravlm_bench.components import ComponentFactory, guard
from ravlm_bench.distributed import (
    SINGLE,
    DistContext,
    broadcast_object,
    gather_errors,
    rank_failure,
)
from ravlm_bench.errors import ComponentError, ConfigError, RavlmError
from ravlm_bench.registry import Registry
from ravlm_bench.results import RunDir, atomic_write_json, environment_versions
from ravlm_bench.suite import ComponentSpec, Suite, TaskSpec

log = logging.getLogger(__name__)

MAIN_METRIC = {"classification": "weighted_f1", "retrieval": "mean_recall"}


@dataclass
class RunSummary:
    run_dir: Path
    done: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str, int]] = field(default_factory=list)
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Runner:
    def __init__(self, registry: Registry, suite: Suite, run_dir: Path, *, force: bool = False,
                 retrain: bool = False, progress: bool = True, feature_cache=None,
                 dist: DistContext = SINGLE):
        from ravlm_bench.feature_cache import FeatureCache

        self.registry = registry
        self.suite = suite
        self.run_dir = RunDir(run_dir)
        self.force = force or retrain
        self.retrain = retrain
        self.progress = progress
        self.cache = feature_cache or FeatureCache()
        self.factory = ComponentFactory(registry)
        self.dist = dist

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        summary = RunSummary(self.run_dir.root)
        self._preflight()
        cells = [(t, s, seed) for t in self.suite.tasks for s in t.systems
                 for seed in self.suite.seeds]
        # rank 0 decides what is finished: every rank must run the same cells in lockstep
        if self.retrain and self.dist.is_main:
            # --force alone reloads finished trainings whose signature matches (same data,
            # hyperparameters, seed, code); --retrain starts every training afresh
            shutil.rmtree(self.run_dir.root / "checkpoints", ignore_errors=True)
        finished = broadcast_object(self.dist, [
            not self.force and self.run_dir.finished(t.name, s, seed) is not None
            for t, s, seed in cells] if self.dist.is_main else None)
        bar = _progress_bar(len(cells), enabled=self.progress and self.dist.is_main)
        eta = _Eta(len(cells))
        prepared: dict[str, tuple[Any, Any, FeatureStore] | BaseException] = {}
        self._write_run_json()
        for (task_spec, system_name, seed), done in zip(cells, finished, strict=True):
            label = f"{task_spec.name} / {system_name} / seed {seed}"
            if done:
                summary.skipped.append((task_spec.name, system_name, seed))
                eta.skip()
                bar.update(1)
                continue
            bar.set_postfix_str(f"{label}: running", refresh=True)
            error = None
            try:
                if task_spec.name not in prepared:
                    prepared[task_spec.name] = self._prepare(task_spec)
                ready = prepared[task_spec.name]
                if isinstance(ready, BaseException):
                    raise ready
                self._run_cell(task_spec, system_name, seed, *ready,
                               on_stage=lambda stage, label=label: bar.set_postfix_str(
                                   f"{label}: {stage}", refresh=True))
            except Exception as exc:  # one broken cell never stops the suite
                error = exc
                log.debug("%s", traceback.format_exc())
                if task_spec.name not in prepared:
                    prepared[task_spec.name] = exc
            self._agree_on_outcome(label, error)
            if error is None:
                summary.done.append((task_spec.name, system_name, seed))
                log.info("[%d/%d] %s done; %s", eta.finished + 1, len(cells), label,
                         eta.remaining_text())
            else:
                if task_spec.name not in self._run["tasks"]:
                    # the task could not even be created: its kind is unknown, and its
                    # failed cells still need a table to show in
                    self._record_task(task_spec, "classification", None)
                message = _one_line(error)
                if self.dist.is_main:  # every rank failed alike; one report is enough
                    log.error("%s failed: %s", label, message)
                self._write_failed(task_spec, system_name, seed, error)
                summary.failed.append((task_spec.name, system_name, seed, message))
            eta.tick()
            bar.update(1)
        bar.close()
        return summary

    def _agree_on_outcome(self, label: str, error: Exception | None) -> None:
        """Under torchrun: a cell that failed the same way on every rank (a broken plugin, bad
        data) is a failed cell like any other; a failure on some ranks only stops the run,
        naming each failed rank, on every rank."""
        if not self.dist.enabled:
            return
        messages = gather_errors(self.dist, error)
        if any(m is not None for m in messages) and len(set(messages)) > 1:
            raise rank_failure(label, messages)

    # -- stages -----------------------------------------------------------------------------

    def _prepare(self, task_spec: TaskSpec):
        """Create the task and its dataset and build the task's data (shared by its cells)."""
        task = self.factory.create("tasks", ComponentSpec(task_spec.name, task_spec.params))
        with guard(task, "reading its attributes"):
            dataset_name, kind = task.obj.dataset, task.obj.kind
        if kind not in MAIN_METRIC:
            raise ComponentError("task", task.name, task.plugin,
                                 f"kind must be 'classification' or 'retrieval', got {kind!r}")
        self._record_task(task_spec, kind, None)
        params = dict(self.suite.data.get(dataset_name, {}))
        # rank 0 first: it generates the demo world and fills the parsed-dataset cache,
        # which the other ranks then read instead of racing to write it
        first_error = None
        if self.dist.is_main:
            try:
                dataset = self._create_dataset(dataset_name, params)
            except Exception as exc:
                first_error = exc
        failed_on_main = broadcast_object(
            self.dist, _one_line(first_error) if first_error is not None else None)
        if first_error is not None:
            raise first_error
        if failed_on_main is not None:
            raise ReplayedError(failed_on_main)  # the same failure, so ranks agree on it
        if not self.dist.is_main:
            dataset = self._create_dataset(dataset_name, params)
        data_seed = int(self.suite.run.get("data_seed", 0))
        with guard(task, "build"):
            data = task.obj.build(dataset.obj, data_seed)
        with guard(dataset, "fingerprint"):
            fingerprint = f"{dataset.obj.fingerprint()}-{task_spec.name}-{data_seed}"
        if self.dist.is_main:
            self._report_leakage(task_spec.name, data, kind)
        features = FeatureStore(fingerprint, self.cache, progress=self.progress, dist=self.dist)
        self._record_task(task_spec, kind, data)
        return task, data, features

    def _create_dataset(self, dataset_name: str, params: dict):
        params = self._resolve_root(dataset_name, params)
        return self.factory.create("datasets", ComponentSpec(dataset_name, params))

    def _resolve_root(self, dataset_name: str, params: dict, *, generate: bool = True) -> dict:
        """The dataset directory: the suite's root, the demo world, or $RAVLM_DATA/<name>.

        ``generate=False`` checks without generating the demo world (the preflight)."""
        from ravlm_bench.paths import data_root

        root = params.get("root")
        if root == "demo" or (root is None and self.suite.run.get("demo", False)):
            if not generate:
                return params
            from ravlm_bench.demo import ensure_demo_world

            size = self.suite.run.get("demo_size", "small")
            params["root"] = str(ensure_demo_world(seed=0, size=size) / dataset_name)
        elif root is None:
            env_root = data_root(dataset_name)
            if env_root is None:
                raise ConfigError(
                    f"{self.suite.path}: no data for {dataset_name!r}; set root in "
                    f"[data.{dataset_name}] or point $RAVLM_DATA at a folder holding "
                    f"{dataset_name}/")
            params["root"] = str(env_root)
        if not Path(params["root"]).expanduser().exists():
            raise ConfigError(f"{self.suite.path}: data directory for {dataset_name!r} does "
                              f"not exist: {params['root']}; set root in [data.{dataset_name}] "
                              f"or $RAVLM_DATA")
        return params

    def _preflight(self) -> None:
        """Stop before any cell when a task's data directory is missing: one clear error
        instead of the same failure in every cell."""
        for task_spec in self.suite.tasks:
            try:
                task = self.factory.create("tasks", ComponentSpec(task_spec.name,
                                                                  task_spec.params))
                dataset_name = task.obj.dataset
            except Exception:  # a broken task fails its own cells, later
                continue
            self._resolve_root(dataset_name, dict(self.suite.data.get(dataset_name, {})),
                               generate=False)

    def _run_cell(self, task_spec: TaskSpec, system_name: str, seed: int, task, data,
                  features: FeatureStore, on_stage=None) -> None:
        system = self.suite.systems[system_name]
        common = dict(factory=self.factory, features=features, metric=self.suite.metric,
                      dist=self.dist, on_stage=on_stage)
        checkpoint_dir = (self.run_dir.root / "checkpoints" / task_spec.name / system_name
                          / f"seed-{seed}")
        if task.obj.kind == "classification":
            result = run_classification_cell(data, system, seed, **common,
                                             checkpoint_dir=checkpoint_dir)
        else:
            result = run_retrieval_cell(data, system, seed, **common,
                                        checkpoint_dir=checkpoint_dir)
        record = self._record_base(task_spec.name, system_name, seed)
        record.update(status="ok", error=None, metrics=result.metrics, cost=result.cost,
                      timings=result.timings, per_class=result.per_class,
                      training=_jsonable(result.training))
        record["provenance"]["components"] = result.components
        record["provenance"]["world_size"] = self.dist.world_size
        if self.dist.is_main:
            self.run_dir.write_cell(record, result.predictions)

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
        record = self._record_base(task_spec.name, system, seed)
        plugin = getattr(exc, "plugin", None)
        record.update(status="failed", metrics={}, cost={}, timings={},
                      error={"plugin": plugin, "type": type(exc).__name__,
                             "message": _one_line(exc)})
        if self.dist.is_main:
            self.run_dir.write_cell(record, None)

    def _write_run_json(self) -> None:
        path = self.run_dir.run_json
        previous = _read_json(path)
        run = {
            "suite": self.suite.name, "suite_path": str(self.suite.path),
            "suite_sha256": self.suite.sha256, "baseline": self.suite.baseline,
            "seeds": list(self.suite.seeds),
            "systems": {n: s.components() for n, s in self.suite.systems.items()},
            "tasks": previous.get("tasks", {}),
            "created": previous.get("created")
            or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": environment_versions(self.registry.pm.sources),
        }
        if previous and previous.get("suite_sha256") != self.suite.sha256:
            log.warning("%s was made by another version of the suite; finished cells are "
                        "reused (use --force to recompute)", path)
        self._run = run
        if self.dist.is_main:
            atomic_write_json(path, run)

    def _record_task(self, task_spec: TaskSpec, kind: str, data) -> None:
        entry = {"kind": kind, "main_metric": MAIN_METRIC[kind],
                 "systems": list(task_spec.systems)}
        if data is not None and kind == "classification":
            entry["classes"] = list(data.classes)
            entry["sizes"] = {"train": len(data.train), "test": len(data.test),
                              "val": len(data.val) if data.val is not None else 0}
        elif data is not None:
            entry["sizes"] = {"train_images": len(data.train), "test_images": len(data.test),
                              "test_captions": len(data.test.texts)}
        self._run["tasks"][task_spec.name] = entry
        if self.dist.is_main:
            atomic_write_json(self.run_dir.run_json, self._run)

    def _report_leakage(self, task: str, data, kind: str) -> None:
        from ravlm_bench.knowledge import find_leakage

        report = find_leakage(data.train.image_ids, data.train.image_paths,
                              data.test.image_ids, data.test.image_paths)
        if not report.clean:
            log.warning("%s: %s", task, report.message())


class ReplayedError(RavlmError):
    """Rank 0's failure, raised again on the other ranks with the very same message."""


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, RavlmError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=lambda v: getattr(v, "item", lambda: str(v))()))


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class _Eta:
    """Time left, estimated from the cells this process actually ran (not skipped ones)."""

    def __init__(self, total: int):
        import time

        self.total, self.finished, self.ran = total, 0, 0
        self.started = time.monotonic()
        self._clock = time.monotonic

    def skip(self) -> None:
        self.finished += 1

    def tick(self) -> None:
        self.finished += 1
        self.ran += 1

    def remaining_text(self) -> str:
        if not self.ran:
            return "estimating time left"
        per_cell = (self._clock() - self.started) / (self.ran + 1)
        left = per_cell * (self.total - self.finished - 1)
        return f"about {left / 60:.1f} min left"


class _NullBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cell", desc="suite", dynamic_ncols=True)
