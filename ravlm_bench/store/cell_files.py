"""A finished cell's two files, read back checked: its JSON record and its arrays.

A cell is ``seed-<n>.json`` (the record) beside ``seed-<n>.npz`` (its arrays: the task's
predictions, ``replicate.<metric>`` values on the shared resamples, the explorer's
``explore.*`` arrays). The record carries its own checksum (``record_sha256``) and that of
the arrays file (``arrays_sha256``). This module is the one place that opens a cell's
arrays: :func:`read_arrays` verifies the file against the record's checksum before loading
it and raises :class:`CellArraysError`, a :class:`DataError` whose message is one line
naming the file and what is wrong with it. The leaderboard, ``compare``, ``show`` and the
explorer let that error stop them; the run ledger catches it, names the cell and recomputes
it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.foundation.errors import DataError, clipped
from ravlm_bench.store.run_dir import json_default

RECORD_CHECKSUM = "record_sha256"
ARRAYS_CHECKSUM = "arrays_sha256"
REPLICATE_PREFIX = "replicate."
# characters of a library's message quoted in ours (zipfile quotes raw member names)
WHY_WIDTH = 200


class CellArraysError(DataError):
    """A cell's arrays file is missing, does not match its checksum, or does not load.

    ``path`` is the file, ``problem`` what is wrong (``"missing"``, ``"damaged (checksum
    mismatch)"``, ``"unreadable (...)"``); the message adds how to get the cell back.
    """

    def __init__(self, path: Path, problem: str, remedy: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}; {remedy}")


def record_checksum(record: dict) -> str:
    """sha256 of a cell record's canonical JSON, its own checksum left out: a record that
    still parses after damage (a digit changed) is caught too."""
    body = {k: v for k, v in record.items() if k != RECORD_CHECKSUM}
    text = json.dumps(body, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def read_cell(path: Path) -> tuple[dict | None, str | None]:
    """A cell record and None, or None and what is wrong with the file: missing, not JSON,
    not an object, or (for records that carry one) not matching its checksum."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"is not valid JSON ({clipped(exc, WHY_WIDTH)})"
    except RecursionError:
        return None, "is not valid JSON (nested too deeply)"
    if not isinstance(record, dict):
        return None, f"holds a JSON {type(record).__name__}, not a cell record"
    expected = record.get(RECORD_CHECKSUM)
    try:
        damaged = expected is not None and expected != record_checksum(record)
    except (RecursionError, ValueError):  # nested too deeply, or NaN keys json cannot sort
        damaged = True
    if damaged:
        return None, "is damaged (its content does not match its checksum)"
    return record, None


def arrays_path(cell_json: Path) -> Path:
    """The arrays file beside a cell's record."""
    return Path(cell_json).with_suffix(".npz")


def arrays_checksum(data: bytes) -> str:
    """What a record stores as ``arrays_sha256`` for an arrays file holding ``data``."""
    return hashlib.sha256(data).hexdigest()


def verified_bytes(cell_json: Path, expected_sha256: Any) -> bytes:
    """The bytes of the cell's arrays file, checked against ``expected_sha256`` (the
    record's ``arrays_sha256``; a record written before arrays were checksummed has none,
    and its file is taken as it is).

    :raises CellArraysError: the file is missing or does not match the checksum.
    """
    path = arrays_path(cell_json)
    recorded = isinstance(expected_sha256, str) and bool(expected_sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CellArraysError(path, "missing", _remedy(recorded)) from None
    except OSError as exc:
        raise CellArraysError(path, f"unreadable ({exc.strerror or exc})",
                              _remedy(False)) from None
    if recorded and arrays_checksum(data) != expected_sha256:
        raise CellArraysError(path, "damaged (checksum mismatch)", _remedy(True))
    return data


def read_arrays(cell_json: Path, expected_sha256: Any,
                wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The cell's arrays whose names ``wanted`` accepts (all without it), after
    :func:`verified_bytes` checked the file; the others are not decompressed.

    :raises CellArraysError: the file is missing, damaged or does not load as arrays.
    """
    with _opened(cell_json, expected_sha256) as arrays:
        return {name: arrays[name] for name in arrays.files if wanted is None or wanted(name)}


def array_names(cell_json: Path, expected_sha256: Any) -> list[str]:
    """The names of the arrays in the cell's checked arrays file, none of them loaded.

    :raises CellArraysError: as :func:`read_arrays`.
    """
    with _opened(cell_json, expected_sha256) as arrays:
        return list(arrays.files)


# what numpy and zipfile raise on an archive they cannot read, when opening it or a member
# (a damaged header can claim an unsupported compression method or an encrypted member)
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, RuntimeError)


@contextmanager
def _opened(cell_json: Path, expected_sha256: Any) -> Iterator[np.lib.npyio.NpzFile]:
    data = verified_bytes(cell_json, expected_sha256)

    def unreadable(why: str) -> CellArraysError:
        # it matches its checksum (or has none), so a rerun would take it as finished
        return CellArraysError(arrays_path(cell_json), f"unreadable ({why})", _remedy(False))

    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
    except _UNREADABLE as exc:
        raise unreadable(clipped(exc, WHY_WIDTH)) from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise unreadable("a single array, not an .npz archive")
    with arrays:
        try:
            yield arrays
        except _UNREADABLE as exc:
            raise unreadable(clipped(exc, WHY_WIDTH)) from None


def _remedy(recomputed_by_a_rerun: bool) -> str:
    # a rerun recomputes a cell whose arrays fail their recorded checksum; a file without a
    # recorded checksum, or one written unreadable, passes the ledger's check
    return ("ravlm-bench run recomputes the cell" if recomputed_by_a_rerun
            else "ravlm-bench run --force recomputes the cell")
