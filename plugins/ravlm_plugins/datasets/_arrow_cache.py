"""Parsed tables cached as Hugging Face ``datasets`` Arrow files, keyed by the source files.

The key is a hash of the loader version, the loader options and, for every source file, its
path, size and modification time (``mtime_ns``): editing or replacing a file changes the
key, and a second load of unchanged files only stats them and memory-maps the tables.
Entries are written into a temporary directory and renamed into place, so a killed load
never leaves a half-written entry that a later load would trust. The meta file records the
sha256 of every Arrow file and a digest of its own content; a load checks them before opening
any table, so a damaged entry (or one written before checksums) is parsed again, not trusted.
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


INTEGRITY = "integrity"  # the meta's checksums: {"files": {name: sha256}, "meta_sha256": ...}


class DamagedEntry(Exception):
    """What is wrong with a cache entry that exists but cannot be trusted."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def meta_digest(meta: dict, files: dict[str, str]) -> str:
    """A digest of the meta content (the file checksums included, this digest excluded)."""
    blob = json.dumps({"meta": meta, "files": files}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def read_entry(directory: Path) -> dict | None:
    """The verified metadata of the entry, None when there is none; raises DamagedEntry."""
    try:
        raw = (directory / META_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise DamagedEntry(f"{META_FILE} unreadable: {exc}") from exc
    try:
        meta = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise DamagedEntry(f"{META_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DamagedEntry(f"{META_FILE} holds a JSON {type(meta).__name__}, not an object")
    integrity = meta.pop(INTEGRITY, None)
    if integrity is None:
        raise DamagedEntry("written by an older version without checksums")
    files = integrity.get("files") if isinstance(integrity, dict) else None
    if not isinstance(files, dict) or integrity.get("meta_sha256") != meta_digest(meta, files):
        raise DamagedEntry(f"{META_FILE} does not match its recorded digest")
    # the digest matched, so counts and files are what write_entry recorded
    for kind, splits in meta.get("counts", {}).items():
        for split, rows in splits.items():
            name = table_file(directory, kind, split).name
            if rows and name not in files:
                raise DamagedEntry(f"{name} has no recorded checksum")
    for name, expected in files.items():
        try:
            actual = sha256_file(directory / name)
        except OSError as exc:
            raise DamagedEntry(f"{name} unreadable: {exc}") from exc
        if actual != expected:
            raise DamagedEntry(f"{name} does not match its recorded sha256")
    return meta


def load_meta(directory: Path) -> dict | None:
    """The entry's metadata, or None when there is no entry or it cannot be trusted."""
    try:
        return read_entry(directory)
    except DamagedEntry as exc:
        log.warning("dataset cache entry %s is damaged (%s); parsing the source files again "
                    "and rewriting it", directory, exc)
        return None


def _is_sound(directory: Path) -> bool:
    try:
        return read_entry(directory) is not None
    except DamagedEntry:
        return False


def write_entry(directory: Path, tables: dict[tuple[str, str], Any], meta: dict) -> None:
    """Write one Arrow file per (kind, split) and ``meta.json`` with their checksums, then
    rename into place (replacing a damaged entry)."""
    from datasets import Features
    from datasets.arrow_writer import ArrowWriter

    # another process may finish the same entry first; its copy is as good as ours
    with directory_written_atomically(directory, _is_sound) as tmp:
        files = {}
        for (kind, split), table in tables.items():
            if table.num_rows == 0:
                continue
            path = table_file(tmp, kind, split)
            features = Features.from_arrow_schema(table.schema)
            with ArrowWriter(features=features, path=str(path)) as w:
                w.write_table(table)
                w.finalize()
            files[path.name] = sha256_file(path)
        # a JSON round trip, so the digest is over what a load will read back
        plain = json.loads(json.dumps(meta))
        integrity = {"files": files, "meta_sha256": meta_digest(plain, files)}
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump({**plain, INTEGRITY: integrity}, f, indent=1, sort_keys=True)


def open_table(path: Path):
    """A memory-mapped ``datasets.Dataset`` over one cached Arrow file."""
    from datasets import Dataset

    return Dataset.from_file(str(path), in_memory=False)
