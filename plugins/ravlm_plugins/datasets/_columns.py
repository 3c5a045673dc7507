"""Turning parsed records into typed numpy / Arrow columns, with errors that name the item.

Each column is checked for exactly the JSON types it may hold before numpy converts it
(numpy would otherwise turn ``1.5`` into 1, ``"3"`` into 3 and ``true`` into 1), and integers
must fit the column's type. The fast path converts a whole column at once; only when that
fails is the column walked again to find the first bad item, so valid files pay nothing for
good messages. Record ids that must be unique (image ids) are checked here too.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ravlm_bench.api import DataError

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHOWN_CHARS = 60  # of a bad value's repr in a message: a message stays one short line


def _first_bad(values: Sequence[Any], ok) -> tuple[int, Any]:
    for index, value in enumerate(values):
        if not ok(value):
            return index, value
    return -1, None


def shown(value: Any) -> str:
    """``repr(value)`` cut to a length that keeps an error message on one short line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits_float32(v: Any) -> bool:
    try:
        return _is_number(v) and math.isfinite(v) and abs(v) <= _FLOAT32_MAX
    except OverflowError:  # an integer too large for a float
        return False


def _int_check(dtype) -> tuple[Callable[[Any], bool], Callable[[Any], str]]:
    """Whether a value fits the integer ``dtype``, and what was expected instead of it."""
    info = np.iinfo(dtype)
    return ((lambda v: _is_int(v) and info.min <= v <= info.max),
            lambda v: f"an integer from {info.min} to {info.max}" if _is_int(v)
            else "an integer")


def _only_types(values: Sequence[Any], allowed: tuple[type, ...]) -> bool:
    # exact types: bool is a subclass of int, and JSON true is not a number
    return set(map(type, values)) <= set(allowed)


def _typed_column(values: Sequence[Any], display: str, section: str, key: str, dtype,
                  ok, expected: Callable[[Any], str],
                  allowed: tuple[type, ...]) -> np.ndarray:
    if _only_types(values, allowed):
        try:
            out = np.array(values, dtype=dtype)
            if (out.ndim == 1 and len(out) == len(values)
                    and (out.dtype.kind != "f" or bool(np.isfinite(out).all()))):
                return out
        except (TypeError, ValueError, OverflowError):
            pass
    index, value = _first_bad(values, ok)
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {shown(value)}, "
                    f"expected {expected(value)}")


def int_column(values: Sequence[Any], display: str, section: str, key: str,
               dtype=np.int64) -> np.ndarray:
    ok, expected = _int_check(dtype)
    return _typed_column(values, display, section, key, dtype, ok, expected, (int,))


def number_column(values: Sequence[Any], display: str, section: str, key: str,
                  dtype=np.float32) -> np.ndarray:
    return _typed_column(values, display, section, key, dtype, _fits_float32,
                         lambda _: "a finite number", (int, float))


def int_value(value: Any, display: str, where: str, key: str) -> int:
    """One integer id read on its own (before it names a file), checked like a column's."""
    ok, expected = _int_check(np.int64)
    if not ok(value):
        raise DataError(f"{display}: {where} key {key!r} is {shown(value)}, expected "
                        f"{expected(value)}")
    return value


def unique_ids(ids: np.ndarray, display: str, name: Callable[[int], str],
               key: str | None = None) -> None:
    """Raise naming the first record whose id repeats an earlier one; ``name(row)`` says
    which record a row is (like ``"images[12]"``), ``key`` where its id is read from."""
    repeated = first_duplicates(ids)
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero(ids == ids[row])[0])
        has = f"key {key!r} is" if key else "has id"
        raise DataError(f"{display}: {name(row)} {has} {int(ids[row])}, as has {name(first)}; "
                        "image ids must be unique")


def optional_int_column(values: Sequence[Any], display: str, section: str, key: str,
                        missing: int = -1) -> np.ndarray:
    """Integers where JSON ``null`` means "none" (Visual Genome's ``coco_id``)."""
    return int_column([missing if v is None else v for v in values], display, section, key)


def bool_column(values: Sequence[Any], display: str, section: str, key: str) -> np.ndarray:
    ints = int_column(values, display, section, key)  # COCO writes iscrowd as 0 / 1
    if ((ints != 0) & (ints != 1)).any():
        index = int(np.flatnonzero((ints != 0) & (ints != 1))[0])
        raise DataError(f"{display}: {section}[{index}] key {key!r} is "
                        f"{shown(values[index])}, expected 0 or 1")
    return ints.astype(bool)


def str_column(values: Sequence[Any], display: str, section: str, key: str) -> list[str]:
    if all(type(v) is str for v in values):
        return values if isinstance(values, list) else list(values)
    index, value = _first_bad(values, lambda v: isinstance(v, str))
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {shown(value)}, "
                    "expected a string")


def split_column(values: Sequence[Any], display: str, section: str, key: str) -> list[str]:
    """Split names: short plain words, since each names a file of the parsed-data cache."""
    names = str_column(values, display, section, key)
    for name in set(names):
        if not _SPLIT_NAME.fullmatch(name):
            index = names.index(name)
            raise DataError(f"{display}: {section}[{index}] key {key!r} is {shown(name)}, "
                            "expected a split name (up to 64 letters, digits, '_' or '-')")
    return names


def box_column(values: Sequence[Any], display: str, section: str, key: str) -> np.ndarray:
    """``[x, y, w, h]`` lists -> float32 array of shape (n, 4)."""
    n = len(values)
    if _only_types(values, (list,)):
        try:
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
            if n == 0 or (lengths == 4).all():
                numbers = list(itertools.chain.from_iterable(values))
                if _only_types(numbers, (int, float)):
                    flat = np.fromiter(numbers, dtype=np.float32, count=4 * n)
                    if np.isfinite(flat).all():
                        return flat.reshape(n, 4)
        except (TypeError, ValueError, OverflowError):
            pass
    index, value = _first_bad(
        values, lambda v: isinstance(v, list) and len(v) == 4 and all(map(_fits_float32, v)))
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {shown(value)}, "
                    "expected [x, y, width, height]")


def lookup(keys: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Row of each key in ``known`` (unique ids), -1 where absent; vectorised."""
    if len(known) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    order = np.argsort(known, kind="stable")
    sorted_known = known[order]
    pos = np.searchsorted(sorted_known, keys)
    pos_clipped = np.minimum(pos, len(known) - 1)
    found = sorted_known[pos_clipped] == keys
    return np.where(found, order[pos_clipped], -1)


def first_duplicates(ids: np.ndarray) -> np.ndarray:
    """Mask of rows whose id already appeared earlier (the first occurrence is kept)."""
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    return ~keep
