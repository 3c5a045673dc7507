"""Turning parsed records into typed numpy / Arrow columns, with errors that name the item.

The fast path converts a whole column at once; only when that fails is the column walked
again to find the first bad item, so valid files pay nothing for good messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ravlm_bench.api import DataError


def _first_bad(values: Sequence[Any], ok) -> tuple[int, Any]:
    for index, value in enumerate(values):
        if not ok(value):
            return index, value
    return -1, None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typed_column(values: Sequence[Any], display: str, section: str, key: str, dtype,
                  ok, expected: str) -> np.ndarray:
    try:
        out = np.array(values, dtype=dtype)
        if out.ndim == 1 and len(out) == len(values):
            return out
    except (TypeError, ValueError, OverflowError):
        pass
    index, value = _first_bad(values, ok)
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {value!r}, "
                    f"expected {expected}")


def int_column(values: Sequence[Any], display: str, section: str, key: str,
               dtype=np.int64) -> np.ndarray:
    return _typed_column(values, display, section, key, dtype, _is_int, "an integer")


def number_column(values: Sequence[Any], display: str, section: str, key: str,
                  dtype=np.float32) -> np.ndarray:
    return _typed_column(values, display, section, key, dtype, _is_number, "a number")


def optional_int_column(values: Sequence[Any], display: str, section: str, key: str,
                        missing: int = -1) -> np.ndarray:
    """Integers where JSON ``null`` means "none" (Visual Genome's ``coco_id``)."""
    return int_column([missing if v is None else v for v in values], display, section, key)


def bool_column(values: Sequence[Any], display: str, section: str, key: str) -> np.ndarray:
    ints = int_column(values, display, section, key)  # COCO writes iscrowd as 0 / 1
    if ((ints != 0) & (ints != 1)).any():
        index = int(np.flatnonzero((ints != 0) & (ints != 1))[0])
        raise DataError(f"{display}: {section}[{index}] key {key!r} is {values[index]!r}, "
                        "expected 0 or 1")
    return ints.astype(bool)


def str_column(values: Sequence[Any], display: str, section: str, key: str) -> list[str]:
    if all(type(v) is str for v in values):
        return values if isinstance(values, list) else list(values)
    index, value = _first_bad(values, lambda v: isinstance(v, str))
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {value!r}, expected a string")


def box_column(values: Sequence[Any], display: str, section: str, key: str) -> np.ndarray:
    """``[x, y, w, h]`` lists -> float32 array of shape (n, 4)."""
    n = len(values)
    try:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        if n == 0 or (lengths == 4).all():
            flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.float32,
                               count=4 * n)
            return flat.reshape(n, 4)
    except (TypeError, ValueError):
        pass
    index, value = _first_bad(
        values, lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)))
    raise DataError(f"{display}: {section}[{index}] key {key!r} is {value!r}, "
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
