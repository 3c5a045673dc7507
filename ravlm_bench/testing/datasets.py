"""Conformance checks for datasets and publishers: tables, columns, absent splits, and
a publisher that writes its files."""

from __future__ import annotations

from typing import Any

from ravlm_bench.testing._common import _fail

# A split name no dataset has: asking for its table must be a DataError, not a KeyError.
_ABSENT_SPLIT = "conformance-absent-split"


def check_dataset(dataset: Any) -> None:
    """Check a loaded dataset: ``name``, ``root`` and ``kinds`` (record kinds of
    ``RECORD_SCHEMAS``); ``splits()``; each kind's table per split has its schema's columns
    and only rows of that split, with a ``DataError`` for an empty split; image paths are
    absolute and exist; ``fingerprint()`` is a stable non-empty string."""
    _check_dataset_attributes(dataset)
    where = f"dataset {dataset.name!r}"
    splits = _dataset_splits(dataset, where)
    for kind in dataset.kinds:
        tables = _tables_of_kind(dataset, kind, splits, where)
        if not tables:
            _fail(f"{where}: kind {kind!r} has no rows in any of the splits {splits}")
        if kind == "images" and len(tables) < len(splits):
            empty = [s for s in splits if s not in tables]
            _fail(f"{where}: splits() lists {empty} but they have no images")
        for split, table in tables.items():
            _check_table(table, kind, split, f"{where}: table({kind!r}, {split!r})")
    _check_absent_split(dataset, where)
    first, second = dataset.fingerprint(), dataset.fingerprint()
    if not isinstance(first, str) or not first or first != second:
        _fail(f"{where}: fingerprint() must return the same non-empty string every call, "
              f"got {first!r} then {second!r}")


def _check_dataset_attributes(dataset: Any) -> None:
    from pathlib import Path

    from ravlm_bench.plugin_host.contracts import RECORD_SCHEMAS

    name = getattr(dataset, "name", None)
    if not isinstance(name, str) or not name:
        _fail(f"dataset.name must be a non-empty str, got {name!r}")
    root = getattr(dataset, "root", None)
    if not isinstance(root, Path) or not root.is_dir():
        _fail(f"dataset {name!r}: root must be the pathlib.Path of an existing directory, "
              f"got {root!r}")
    kinds = getattr(dataset, "kinds", None)
    if not isinstance(kinds, tuple) or not kinds or len(set(kinds)) != len(kinds):
        _fail(f"dataset {name!r}: kinds must be a non-empty tuple of distinct record kinds, "
              f"got {kinds!r}")
    unknown = [kind for kind in kinds if kind not in RECORD_SCHEMAS]
    if unknown:
        _fail(f"dataset {name!r}: kinds {unknown} are not record kinds of RECORD_SCHEMAS "
              f"({', '.join(RECORD_SCHEMAS)})")


def _dataset_splits(dataset: Any, where: str) -> list[str]:
    splits = dataset.splits()
    if (not isinstance(splits, list) or not splits
            or not all(isinstance(s, str) and s for s in splits)
            or len(set(splits)) != len(splits)):
        _fail(f"{where}: splits() must return a non-empty list of distinct split names, "
              f"got {splits!r}")
    return splits


def _tables_of_kind(dataset: Any, kind: str, splits: list[str], where: str) -> dict:
    """The non-empty tables of ``kind`` by split; an empty split raises DataError."""
    from ravlm_bench.foundation.errors import DataError

    tables = {}
    for split in splits:
        try:
            table = dataset.table(kind, split)
        except DataError:
            continue
        except Exception as exc:
            _fail(f"{where}: table({kind!r}, {split!r}) raised {type(exc).__name__}: {exc} "
                  "(an empty split must raise DataError)")
        if len(table) == 0:
            _fail(f"{where}: table({kind!r}, {split!r}) returned an empty table; an empty "
                  "split must raise DataError")
        tables[split] = table
    return tables


def _check_table(table: Any, kind: str, split: str, where: str) -> None:
    import os

    from ravlm_bench.plugin_host.contracts import RECORD_SCHEMAS

    columns = getattr(table, "column_names", None)
    if not isinstance(columns, list):
        _fail(f"{where}: returned {type(table).__name__}, expected a datasets.Dataset")
    missing = [c for c in RECORD_SCHEMAS[kind] if c not in columns]
    if missing:
        _fail(f"{where}: lacks the columns {missing} of RECORD_SCHEMAS[{kind!r}]")
    other_splits = sorted(set(_column(table, "split")) - {split})
    if other_splits:
        _fail(f"{where}: holds rows whose split column says {other_splits}")
    if kind == "images":
        bad = [p for p in _column(table, "image_path")
               if not (isinstance(p, str) and os.path.isabs(p) and os.path.isfile(p))]
        if bad:
            _fail(f"{where}: {len(bad)} image_path values are not absolute paths of existing "
                  f"files, e.g. {bad[0]!r}")


def _column(table: Any, name: str) -> list:
    # a datasets.Dataset's Arrow table converts a column at once, 150x faster than
    # iterating the Dataset's own column object row by row
    arrow: Any = getattr(table, "data", None)
    column = arrow[name] if hasattr(arrow, "column_names") else table[name]
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)


def _check_absent_split(dataset: Any, where: str) -> None:
    from ravlm_bench.foundation.errors import DataError

    kind = dataset.kinds[0]
    try:
        dataset.table(kind, _ABSENT_SPLIT)
    except DataError:
        return
    except Exception as exc:
        _fail(f"{where}: table({kind!r}, {_ABSENT_SPLIT!r}) raised {type(exc).__name__}; a "
              "split the dataset does not have must raise DataError")
    _fail(f"{where}: table({kind!r}, {_ABSENT_SPLIT!r}) returned a table for a split the "
          "dataset does not have; it must raise DataError")


def check_publisher(publisher: Any, board: Any, out_dir: Any) -> None:
    """Check a publisher: ``publish(board, out_dir)`` returns a non-empty list of the paths
    it wrote, each a non-empty file under ``out_dir`` (which it creates if needed)."""
    from pathlib import Path

    out_dir = Path(out_dir)
    written = publisher.publish(board, out_dir)
    if not isinstance(written, list) or not written:
        _fail(f"publish() must return a non-empty list of the paths it wrote, got {written!r}")
    for path in written:
        if not isinstance(path, Path):
            _fail(f"publish() returned {path!r} ({type(path).__name__}), expected a Path")
        if not path.resolve().is_relative_to(out_dir.resolve()):
            _fail(f"publish() returned {path}, which is not under out_dir {out_dir}")
        if not path.is_file():
            _fail(f"publish() returned {path}, which is not a file")
        if path.stat().st_size == 0:
            _fail(f"publish() wrote an empty file: {path}")
