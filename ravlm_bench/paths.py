"""Where the harness keeps its files: the usual environment-variable-then-user-dir convention."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "RAVLM_BENCH_CACHE"
DATA_ENV = "RAVLM_DATA"


def cache_dir() -> Path:
    """Root of everything cached: features, parsed datasets, the demo world, indexes."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("ravlm-bench")
    return Path(root).expanduser()


def cache_subdir(name: str) -> Path:
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(dataset: str) -> Path | None:
    """``$RAVLM_DATA/<dataset>`` when ``RAVLM_DATA`` is set, else None."""
    base = os.environ.get(DATA_ENV)
    return Path(base).expanduser() / dataset if base else None
