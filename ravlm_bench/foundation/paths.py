"""Where the harness keeps its files: the usual environment-variable-then-user-dir convention."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """The cache directory ``name`` under :func:`cache_dir`, created if missing."""
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def directory_written_atomically(target: Path,
                                 complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target`` to fill; when the block ends
    without an error it is renamed onto ``target``, so a killed writer never leaves a
    half-written ``target`` for a later reader.

    If another process renamed its copy into place first, that copy is kept when
    ``complete(target)`` says it is whole, else replaced. The temporary directory is removed
    whatever happens; those a killed writer left (``.tmp-*``, a day old: no write in
    progress is) are removed before a new one is made.
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
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not complete(target):
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def data_root(dataset: str) -> Path | None:
    """``$RAVLM_DATA/<dataset>`` when ``RAVLM_DATA`` is set, else None."""
    base = os.environ.get(DATA_ENV)
    return Path(base).expanduser() / dataset if base else None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
