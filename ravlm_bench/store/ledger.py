"""The run ledger: ``run.json`` (what the run is) and its finished cells, written and
read back for resuming.

``run.json`` holds the suite, its hash, the systems, the seeds and, per task, what the
leaderboard needs to read its cells without any plugin: the task's metric declarations
(:class:`~ravlm_bench.scoring.evaluation.Metric`), its main metric, its head interface and
sizes. Each finished cell is ``cells/<task>/<system>/seed-<n>.json`` plus a ``.npz`` of
arrays (the task's predictions and ``replicate.<metric>``: the metric on each shared
bootstrap resample), written by :meth:`RunLedger.write_cell` with both files' checksums in
the record. :meth:`RunLedger.finished` reads a cell back through
:mod:`ravlm_bench.store.cell_files`: one whose record or arrays are missing or do not match
is named and recomputed, never used. An unreadable ``run.json`` is rebuilt from the cells,
so no rerun forgets finished work; :meth:`RunLedger.locked` keeps a second run out.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.scoring.evaluation import Evaluation
from ravlm_bench.store.cell_files import (
    ARRAYS_CHECKSUM,
    RECORD_CHECKSUM,
    REPLICATE_PREFIX,
    CellArraysError,
    arrays_checksum,
    read_cell,
    record_checksum,
    verified_bytes,
)
from ravlm_bench.store.run_dir import RunDir, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLedger:
    """Reads and writes one run directory; only the main process writes."""

    def __init__(self, root: Path, *, writes: bool = True):
        self.dir = RunDir(root)
        self.writes = writes
        self.run: dict = {}

    @property
    def root(self) -> Path:
        return self.dir.root

    @contextmanager
    def locked(self):
        """Hold the run directory for this run: a second run on the same directory stops
        with a ConfigError naming the holder; a lock left by a dead process is taken over."""
        if not self.writes:
            yield
            return
        path = self.root / LOCK_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname()}
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is not None and _alive(holder):
                    raise ConfigError(
                        f"{self.root} is in use by another run (pid {holder['pid']} on "
                        f"{holder['host']}, {path}); wait for it, or use another --out") from None
                log.warning("%s: taking over a lock left by %s, which is no longer running",
                            path, "an unreadable holder" if holder is None
                            else f"pid {holder['pid']}")
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(mine, handle)
            break
        try:
            yield
        finally:
            if _read_lock(path) == mine:
                path.unlink(missing_ok=True)

    # -- run.json ---------------------------------------------------------------------------

    def start(self, suite, versions: dict[str, str]) -> None:
        """Write run.json for ``suite``, keeping the tasks a previous run recorded."""
        previous = self._previous_run()
        if previous and previous.get("suite_sha256") != suite.sha256:
            log.warning("%s was made by another version of the suite; finished cells are "
                        "reused (use --force to recompute)", self.dir.run_json)
        self.run = {
            "suite": suite.name, "suite_path": str(suite.path), "suite_sha256": suite.sha256,
            "baseline": suite.baseline, "seeds": list(suite.seeds),
            "systems": {n: s.components() for n, s in suite.systems.items()},
            "tasks": previous.get("tasks", {}),
            "created": previous.get("created")
            or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions,
        }
        self._save()

    def record_task(self, name: str, entry: dict) -> None:
        self.run["tasks"][name] = entry
        self._save()

    def _previous_run(self) -> dict:
        path = self.dir.run_json
        if not path.exists():
            return {}
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(run, dict) or not isinstance(run.get("tasks", {}), dict):
                raise ValueError("not a run.json object")
            return run
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            tasks = self._tasks_from_cells()
            log.warning("%s is damaged (%s); rebuilt its %d task(s) from the cells", path,
                        " ".join(str(exc).split()), len(tasks))
            return {"tasks": tasks}

    def _tasks_from_cells(self) -> dict:
        """Each task's declaration as its newest intact cell recorded it."""
        tasks: dict = {}
        for path in sorted((self.root / "cells").glob("*/*/seed-*.json")):
            cell, _ = read_cell(path)
            if cell is not None and isinstance(cell.get("task_declaration"), dict):
                tasks[cell["task"]] = cell["task_declaration"]
        return tasks

    def _save(self) -> None:
        if self.writes:
            atomic_write_json(self.dir.run_json, self.run)

    # -- cells ------------------------------------------------------------------------------

    def finished(self, task: str, system: str, seed: int) -> dict | None:
        """The cell's record if it finished and it and its arrays are intact, else None."""
        path = self.dir.cell_path(task, system, seed)
        record, problem = read_cell(path)
        if record is None:  # read_cell then says what is wrong in problem
            if path.exists():
                log.warning("%s %s; the cell %s / %s / seed %d is recomputed", path, problem,
                            task, system, seed)
            return None
        if record.get("status") != "ok":
            return None
        if record.get(ARRAYS_CHECKSUM) is None:
            return record  # written before arrays were checksummed
        try:
            verified_bytes(path, record[ARRAYS_CHECKSUM])
        except CellArraysError as exc:
            log.warning("%s is %s; the cell %s / %s / seed %d is recomputed", exc.path,
                        exc.problem, task, system, seed)
            return None
        return record

    def write_cell(self, record: dict, evaluation: Evaluation | None) -> None:
        """Write a cell: its arrays first (the evaluation's predictions and resample
        values; a failed cell has none), then its record with both files' checksums."""
        if not self.writes:
            return
        task, system, seed = record["task"], record["system"], record["seed"]
        if evaluation is not None:
            arrays = dict(evaluation.predictions)
            arrays.update({REPLICATE_PREFIX + name: np.asarray(values, np.float64)
                           for name, values in evaluation.replicates.items()})
            buffer = io.BytesIO()
            # compressed: the explorer's strings are fixed-width UTF-32 in numpy, mostly
            # padding (a demo cell: 608 KB plain, 85 KB compressed, 13 ms)
            # numpy's stub types **kwds as if one could be its allow_pickle flag
            np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
            data = buffer.getvalue()
            atomic_write_bytes(self.dir.cell_path(task, system, seed, ".npz"), data)
            record[ARRAYS_CHECKSUM] = arrays_checksum(data)
        record[RECORD_CHECKSUM] = record_checksum(record)
        atomic_write_json(self.dir.cell_path(task, system, seed), record)


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
        # a lock without both keys is damaged: nobody can be shown to hold it
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) \
            and isinstance(holder.get("host"), str) else None
    except (OSError, ValueError):
        return None


def _alive(holder: dict) -> bool:
    """Is the lock's process still running? Another host's process is assumed to be (the
    run directory is shared; only that host can tell)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
