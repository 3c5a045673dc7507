"""The contract every case is judged by, and the results it compares.

A call ends either in correct results (``read_results`` equal to the baseline's) or in a
non-zero exit whose stderr is one ``error: ...`` line, after at most log lines; ``judge``
says which, or why the call is BAD."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .launcher import Finished

CORRECT, CLEAN, BAD = "correct", "clean error", "BAD"
OUTCOMES = (CORRECT, CLEAN, BAD)
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
TRACEBACK = "Traceback (most recent call last)"


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
