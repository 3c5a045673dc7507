"""The on-disk feature cache: features are computed once per (component, dataset, split).

Each entry is a plain ``.npy`` file (memory-mapped on read, never pickled) plus a small JSON
sidecar with its shape, dtype and sha256. Writes are atomic: the array goes to a temporary
file that is fsynced and then renamed into place, and the sidecar is written the same way
only afterwards, so a run killed at any point leaves either no entry or a complete one.
A read whose checksum does not match is treated as a miss: recomputed, with a warning.

Layout: ``<root>/<component>/<dataset>/<split>.npy`` and ``<split>.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from ravlm_bench.foundation import paths
from ravlm_bench.foundation.paths import file_sha256

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class CacheEntry:
    """One cached feature array, as ``ravlm-bench cache ls`` shows it."""

    path: Path
    component: str
    dataset: str
    split: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    created: datetime
    last_used: datetime


def path_component(text: str) -> str:
    """A fingerprint as a directory name: readable when safe, else shortened and hashed."""
    safe = _UNSAFE.sub("_", text)
    if safe == text and 0 < len(text) <= 100 and not text.startswith("."):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{safe.lstrip('.')[:60]}-{digest}"


class FeatureCache:
    """Features on disk, keyed by the component's and the dataset's fingerprints."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else paths.cache_subdir("features")

    def paths_for(self, component_fingerprint: str, dataset_fingerprint: str,
                  split: str) -> tuple[Path, Path]:
        """The ``.npy`` file and its JSON sidecar for one entry."""
        folder = (self.root / path_component(component_fingerprint)
                  / path_component(dataset_fingerprint))
        stem = path_component(split)
        return folder / f"{stem}.npy", folder / f"{stem}.json"

    def get_or_compute(self, component_fingerprint: str | None, dataset_fingerprint: str | None,
                       split: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the cached array, or call ``compute()``, store its result and return it.

        A ``None`` fingerprint means "not cacheable": ``compute()`` runs every time.
        Cached arrays come back memory-mapped read-only.
        """
        if component_fingerprint is None or dataset_fingerprint is None:
            return compute()
        array_path, sidecar_path = self.paths_for(component_fingerprint, dataset_fingerprint,
                                                  split)
        cached = self._read(array_path, sidecar_path)
        if cached is not None:
            return cached
        features = compute()
        if not isinstance(features, np.ndarray):
            raise TypeError(f"feature computation returned {type(features).__name__}, "
                            "expected a numpy array")
        self._write(array_path, sidecar_path, features, {
            "component": component_fingerprint, "dataset": dataset_fingerprint, "split": split,
        })
        return features

    # -- reading and writing --------------------------------------------------------------

    def _read(self, array_path: Path, sidecar_path: Path) -> np.ndarray | None:
        if not sidecar_path.is_file() and not array_path.is_file():
            return None
        problem = None
        try:
            meta = json.loads(sidecar_path.read_text())
            if meta.get("format") != FORMAT_VERSION:
                problem = f"format {meta.get('format')!r}, expected {FORMAT_VERSION}"
            elif array_path.stat().st_size != meta["file_bytes"]:
                problem = f"size {array_path.stat().st_size}, expected {meta['file_bytes']}"
            elif file_sha256(array_path) != meta["sha256"]:
                problem = "checksum mismatch"
            else:
                array = np.load(array_path, mmap_mode="r", allow_pickle=False)
                if list(array.shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
                    problem = f"shape/dtype {array.shape} {array.dtype} differ from the sidecar"
                else:
                    os.utime(sidecar_path)  # "last used", for `cache clear --older-than`
                    return array
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        log.warning("feature cache entry %s is unusable (%s); recomputing", array_path, problem)
        return None

    def _write(self, array_path: Path, sidecar_path: Path, features: np.ndarray,
               keys: dict) -> None:
        folder = array_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp_array = _atomic_write(folder, array_path,
                                  lambda handle: np.save(handle, features, allow_pickle=False))
        meta = dict(keys, format=FORMAT_VERSION, shape=list(features.shape),
                    dtype=str(features.dtype), sha256=file_sha256(tmp_array),
                    file_bytes=tmp_array.stat().st_size,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        os.replace(tmp_array, array_path)
        payload = json.dumps(meta, indent=1).encode()
        tmp_sidecar = _atomic_write(folder, sidecar_path, lambda handle: handle.write(payload))
        os.replace(tmp_sidecar, sidecar_path)
        _fsync_dir(folder)

    # -- management -----------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        found = []
        for sidecar in sorted(self.root.glob("*/*/*.json")):
            array_path = sidecar.with_suffix(".npy")
            try:
                meta = json.loads(sidecar.read_text())
                found.append(CacheEntry(
                    path=array_path, component=meta["component"], dataset=meta["dataset"],
                    split=meta["split"], shape=tuple(meta["shape"]), dtype=meta["dtype"],
                    nbytes=array_path.stat().st_size,
                    created=datetime.fromisoformat(meta["created"]),
                    last_used=datetime.fromtimestamp(sidecar.stat().st_mtime, timezone.utc),
                ))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable feature cache entry %s (%s)", sidecar, exc)
        return found

    def clear(self, older_than: timedelta | None = None) -> int:
        """Delete entries not used for ``older_than`` (all when None); returns how many.

        Leftover temporary files of killed runs are removed too (when older than an hour,
        so a write in progress elsewhere is not disturbed, or always when clearing all).
        """
        now = time.time()
        max_age = None if older_than is None else older_than.total_seconds()
        removed = 0
        for entry in self.entries():
            if max_age is not None and now - entry.last_used.timestamp() < max_age:
                continue
            for path in (entry.path.with_suffix(".json"), entry.path):
                path.unlink(missing_ok=True)
            removed += 1
        for path in list(self.root.glob("*/*/*")):
            orphan = path.suffix == ".tmp" or (path.suffix == ".npy"
                                               and not path.with_suffix(".json").exists())
            age = now - path.stat().st_mtime
            if orphan and (max_age is None or age > max(3600.0, max_age)):
                path.unlink(missing_ok=True)
        for folder in sorted(self.root.glob("*/*"), reverse=True) + sorted(self.root.glob("*")):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return removed


def _atomic_write(folder: Path, target: Path, write: Callable) -> Path:
    """Write to a fsynced temporary file next to ``target``; the caller renames it."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows); the renames are still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
