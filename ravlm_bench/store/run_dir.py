"""The run directory's layout, the atomic writes every run file goes through, and the
library versions a run records.

::

    RUN_DIR/run.json                            the suite, its hash, tasks, systems, seeds
    RUN_DIR/cells/<task>/<system>/seed-<n>.json  one finished cell (metrics, cost, provenance)
    RUN_DIR/cells/<task>/<system>/seed-<n>.npz   its arrays (predictions, resample values)

Every file is written to a temporary file and renamed into place (:func:`atomic_write_bytes`),
so a reader sees the old file or the new one, never half of one. The ledger
(:mod:`ravlm_bench.store.ledger`) writes cells through here; :mod:`ravlm_bench.store.cell_files`
reads them back checked.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def _file_mode() -> int:
    # what open() would give a new file; mkstemp's 0600 would hide results from other users
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader sees the
    old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, default=json_default)
    atomic_write_bytes(path, (text + "\n").encode())


def json_default(value: Any) -> Any:
    """How run files write numpy scalars and arrays and paths (``json.dumps(default=)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class RunDir:
    """Where a run's files live under its root."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def cell_path(self, task: str, system: str, seed: int, suffix: str = ".json") -> Path:
        return self.root / "cells" / task / system / f"seed-{seed}{suffix}"


def environment_versions(plugin_sources: dict | None = None) -> dict[str, str]:
    """Versions of Python, the key libraries and every plugin distribution."""
    versions = dict(_library_versions())
    for source in (plugin_sources or {}).values():
        if source.distribution:
            versions[source.distribution] = source.version
    return versions


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: each lookup scans the installed distributions."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("ravlm-bench", "torch", "transformers", "usearch", "datasets", "numpy",
                 "scikit-learn", "pluggy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return tuple(versions.items())
