"""Parsed tables cached as Hugging Face ``datasets`` Arrow files, keyed by the source files.

The key is a hash of the loader version, the loader options and, for every source file, its
path, size and modification time (``mtime_ns``): editing or replacing a file changes the
key, and a second load of unchanged files only stats them and memory-maps the tables.
Entries are written into a temporary directory and renamed into place, so a killed load
never leaves a half-written entry that a later load would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ravlm_bench.api import cache_subdir, directory_written_atomically

log = logging.getLogger(__name__)

META_FILE = "meta.json"


def file_fingerprint(paths: Iterable[Path], root: Path) -> list[list]:
    """``[relative path, size, mtime_ns]`` of each existing path (directories included)."""
    entries = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        entries.append([os.path.relpath(path, root), st.st_size, st.st_mtime_ns])
    return entries


def fingerprint(name: str, version: str, root: Path, sources: Iterable[Path],
                options: dict[str, Any]) -> str:
    payload = {
        "dataset": name, "loader_version": version, "root": str(Path(root).resolve()),
        "options": options, "files": file_fingerprint(sources, root),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def entry_dir(name: str, key: str) -> Path:
    return cache_subdir("datasets") / f"{name}-{key[:24]}"


def table_file(directory: Path, kind: str, split: str) -> Path:
    return directory / f"{kind}-{split}.arrow"


def load_meta(directory: Path) -> dict | None:
    """The entry's metadata, or None when there is no complete entry."""
    try:
        with open(directory / META_FILE, encoding="utf-8") as f:
            meta = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable dataset cache entry %s: %s", directory, exc)
        return None
    for kind, splits in meta.get("counts", {}).items():
        for split, rows in splits.items():
            if rows and not table_file(directory, kind, split).is_file():
                log.warning("ignoring incomplete dataset cache entry %s", directory)
                return None
    return meta


def write_entry(directory: Path, tables: dict[tuple[str, str], Any], meta: dict) -> None:
    """Write one Arrow file per (kind, split) and ``meta.json``, then rename into place."""
    from datasets import Features
    from datasets.arrow_writer import ArrowWriter

    # another process may finish the same entry first; its copy is as good as ours
    with directory_written_atomically(directory, lambda d: load_meta(d) is not None) as tmp:
        for (kind, split), table in tables.items():
            if table.num_rows == 0:
                continue
            features = Features.from_arrow_schema(table.schema)
            with ArrowWriter(features=features, path=str(table_file(tmp, kind, split))) as w:
                w.write_table(table)
                w.finalize()
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True)


def open_table(path: Path):
    """A memory-mapped ``datasets.Dataset`` over one cached Arrow file."""
    from datasets import Dataset

    return Dataset.from_file(str(path), in_memory=False)
