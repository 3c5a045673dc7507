"""Leakage: test images that also appear in a task's training split, which retrieval
searches, so a leaked test image can retrieve itself. :func:`audit_leakage` warns once per
task before its cells about test images that share an image id or the file bytes of a
training image; :func:`find_leakage` can also compare the COCO / Flickr ids other datasets
record, and :func:`same_bytes` serves the external knowledge base's leakage guard too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)


def audit_leakage(task: str, data) -> None:
    report = find_leakage(data.train.image_ids, data.train.image_paths,
                          data.test.image_ids, data.test.image_paths)
    if not report.clean:
        log.warning("%s: %s", task, report.message())


@dataclass
class LeakageReport:
    """Test images found in the training data, by route (one image may count in several)."""

    n_test: int
    leaked: int = 0  # distinct test images leaked by any route
    by_route: dict[str, int] = field(default_factory=dict)  # "image id", "file hash", "coco_id"
    examples: list[str] = field(default_factory=list)
    unreadable: int = 0  # test or train files that could not be hashed

    @property
    def clean(self) -> bool:
        return self.leaked == 0

    def message(self) -> str:
        routes = ", ".join(f"{route} {count}" for route, count in self.by_route.items())
        if self.clean:
            return (f"no leakage: none of {self.n_test} test images appear in the training data "
                    f"(checked {', '.join(self.by_route) or 'nothing'})")
        text = (f"leakage: {self.leaked} of {self.n_test} test images also appear in the "
                f"training data ({routes}); e.g. {'; '.join(self.examples[:3])}")
        if self.unreadable:
            text += f"; {self.unreadable} files could not be read"
        return text


MAX_EXAMPLES = 5


def find_leakage(
    train_ids: np.ndarray,
    train_paths: Sequence[str] | None,
    test_ids: np.ndarray,
    test_paths: Sequence[str] | None,
    *,
    cross_ids: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> LeakageReport:
    """Report test images that also appear in training: same id, same bytes, or a cross id.

    ``cross_ids`` maps an id namespace (e.g. ``"coco_id"``) to ``(train values, test
    values)``, aligned with ``train_ids`` / ``test_ids``; ``-1`` means none. Files are hashed
    only when a file of the same size exists on the other side, so a clean split costs one
    ``stat`` per file. Paths may be None to skip the hash check.
    """
    train_ids = np.asarray(train_ids, dtype=np.int64)
    test_ids = np.asarray(test_ids, dtype=np.int64)
    report = LeakageReport(n_test=len(test_ids))
    leaked = np.zeros(len(test_ids), dtype=bool)

    def note(route: str, hits: np.ndarray, describe) -> None:
        report.by_route[route] = int(hits.sum())
        for i in np.flatnonzero(hits & ~leaked)[:MAX_EXAMPLES - len(report.examples)]:
            report.examples.append(describe(i))
        leaked[hits] = True

    note("image id", np.isin(test_ids, train_ids),
         lambda i: f"test image {test_ids[i]} has a training image id")
    if train_paths is not None and test_paths is not None:
        hits, partner, unreadable = same_bytes(list(train_paths), list(test_paths))
        report.unreadable = unreadable
        note("file hash", hits,
             lambda i: f"test file {test_paths[i]} is identical to "
                       f"{train_paths[int(partner[i])]}")
    for namespace, (train_values, test_values) in (cross_ids or {}).items():
        train_values = np.asarray(train_values, dtype=np.int64)
        test_values = np.asarray(test_values, dtype=np.int64)
        hits = (test_values >= 0) & np.isin(test_values, train_values[train_values >= 0])
        note(namespace, hits,
             lambda i, ns=namespace, v=test_values: f"test image {test_ids[i]} has training "
                                                     f"{ns} {v[i]}")
    report.leaked = int(leaked.sum())
    return report


class ByteMatches(NamedTuple):
    """Which test files have a byte-identical training file, and which one."""

    hits: np.ndarray  # bool (n_test,)
    partner: np.ndarray  # int64 (n_test,): the identical training file's row, or -1
    unreadable: int  # files (of either side) that could not be read


def same_bytes(train_paths: list[str], test_paths: list[str]) -> ByteMatches:
    """Which test files have a byte-identical training file (and which one)."""
    hits = np.zeros(len(test_paths), dtype=bool)
    partner = np.full(len(test_paths), -1, dtype=np.int64)
    unreadable = 0
    train_sizes: dict[int, list[int]] = {}
    for j, path in enumerate(train_paths):
        size = _size(path)
        if size is None:
            unreadable += 1
        else:
            train_sizes.setdefault(size, []).append(j)
    digests: dict[int, str | None] = {}
    for i, path in enumerate(test_paths):
        size = _size(path)
        if size is None:
            unreadable += 1
            continue
        if size not in train_sizes:
            continue
        digest = _digest(path)
        for j in train_sizes[size]:
            if j not in digests:
                digests[j] = _digest(train_paths[j])
            if digest is not None and digests[j] == digest:
                hits[i], partner[i] = True, j
                break
    return ByteMatches(hits, partner, unreadable)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _digest(path: str) -> str | None:
    try:
        digest = hashlib.blake2b()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        log.warning("could not read %s to hash it for the leakage check", path)
        return None
