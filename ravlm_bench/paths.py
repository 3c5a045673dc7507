"""Where the harness keeps its files: the usual environment-variable-then-user-dir convention."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import platformdirs

CACHE_ENV = "RAVLM_BENCH_CACHE"
DATA_ENV = "RAVLM_DATA"
# A temporary directory older than this was left by a killed writer: no write takes a day.
STALE_TEMPORARY_S = 24 * 3600.0


def cache_dir() -> Path:
    """Root of everything cached: features, parsed datasets, the demo world, indexes."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("ravlm-bench")
    return Path(root).expanduser()


def cache_subdir(name: str) -> Path:
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def temporary_beside(target: Path) -> Path:
    """A fresh ``.tmp-*`` directory next to ``target``, for a writer to fill and then
    rename onto ``target``, so that a killed write never leaves a half-written entry.

    The ``.tmp-*`` directories that killed writers left there are removed first, once
    they are a day old (a write in progress elsewhere is never that old).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for leftover in target.parent.glob(".tmp-*"):
        try:
            stale = leftover.is_dir() and now - leftover.stat().st_mtime > STALE_TEMPORARY_S
        except OSError:  # removed meanwhile by another process's sweep
            continue
        if stale:
            shutil.rmtree(leftover, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))


def data_root(dataset: str) -> Path | None:
    """``$RAVLM_DATA/<dataset>`` when ``RAVLM_DATA`` is set, else None."""
    base = os.environ.get(DATA_ENV)
    return Path(base).expanduser() / dataset if base else None
