"""The feature cache: computed once, memory-mapped, verified, atomic, never pickled."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import timedelta

import numpy as np
import pytest

from ravlm_bench.store.feature_cache import FeatureCache


class Counter:
    """A compute() that counts its calls."""

    def __init__(self, value=None):
        self.calls = 0
        self.value = np.arange(24, dtype=np.float32).reshape(6, 4) if value is None else value

    def __call__(self):
        self.calls += 1
        return self.value


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features")


def test_computed_once_then_memory_mapped(cache):
    compute = Counter()
    first = cache.get_or_compute("enc-1", "data-1", "train", compute)
    second = cache.get_or_compute("enc-1", "data-1", "train", compute)
    assert compute.calls == 1
    assert isinstance(second, np.memmap) and not second.flags.writeable
    np.testing.assert_array_equal(first, second)
    cache.get_or_compute("enc-1", "data-1", "test", compute)
    cache.get_or_compute("enc-2", "data-1", "train", compute)
    cache.get_or_compute("enc-1", "data-2", "train", compute)
    assert compute.calls == 4


def test_none_fingerprint_is_never_cached(cache):
    compute = Counter()
    cache.get_or_compute(None, "data-1", "train", compute)
    cache.get_or_compute(None, "data-1", "train", compute)
    cache.get_or_compute("enc", None, "train", compute)
    assert compute.calls == 3 and cache.entries() == []


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVLM_BENCH_CACHE", str(tmp_path / "elsewhere"))
    assert FeatureCache().root == tmp_path / "elsewhere" / "features"


def test_unsafe_fingerprints_stay_distinct_and_inside_the_root(cache):
    a = cache.get_or_compute("../x/y", "d", "train/images", Counter())
    b = cache.get_or_compute("../x_y", "d", "train/images", Counter(np.ones((2, 2), np.float32)))
    assert a.shape != b.shape
    for entry in cache.entries():
        assert cache.root in entry.path.parents
    assert {e.component for e in cache.entries()} == {"../x/y", "../x_y"}


def corrupt_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_entry_is_recomputed_with_a_warning(cache, caplog):
    compute = Counter()
    cache.get_or_compute("enc", "data", "train", compute)
    array_path, _ = cache.paths_for("enc", "data", "train")
    corrupt_byte(array_path)
    with caplog.at_level(logging.WARNING):
        again = cache.get_or_compute("enc", "data", "train", compute)
    assert compute.calls == 2 and "checksum mismatch" in caplog.text
    np.testing.assert_array_equal(again, compute.value)
    assert cache.get_or_compute("enc", "data", "train", compute) is not None
    assert compute.calls == 2  # the rewritten entry is good again


def test_killed_writes_are_never_read(cache, monkeypatch):
    compute = Counter()
    array_path, sidecar_path = cache.paths_for("enc", "data", "val")
    folder = array_path.parent
    folder.mkdir(parents=True)

    # killed while writing the array: only a partial temporary file is left
    (folder / ".val.npy.abc123.tmp").write_bytes(b"\x93NUMPY partial")
    cache.get_or_compute("enc", "data", "val", compute)
    assert compute.calls == 1

    # killed between the array's rename and the sidecar's: an array with no sidecar
    sidecar_path.unlink()
    cache.get_or_compute("enc", "data", "val", compute)
    assert compute.calls == 2

    # a truncated array under a complete sidecar (a crash below the filesystem)
    array_path.write_bytes(array_path.read_bytes()[:100])
    cache.get_or_compute("enc", "data", "val", compute)
    assert compute.calls == 3

    # an exception in the middle of np.save leaves nothing behind
    def dies_halfway(handle, array, allow_pickle):
        handle.write(b"\x93NUMPY half")
        raise KeyboardInterrupt

    cache.clear()
    monkeypatch.setattr(np, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("enc", "data", "val", compute)
    monkeypatch.undo()
    assert not array_path.exists() and not list(cache.root.rglob("*.tmp"))
    cache.get_or_compute("enc", "data", "val", compute)
    assert compute.calls == 5


def test_object_arrays_are_refused_not_pickled(cache):
    with pytest.raises(ValueError):
        cache.get_or_compute("enc", "data", "train", Counter(np.array([{"a": 1}], object)))
    assert cache.entries() == []


def test_sidecar_records_shape_dtype_and_checksum(cache):
    cache.get_or_compute("enc", "data", "train", Counter())
    _, sidecar_path = cache.paths_for("enc", "data", "train")
    meta = json.loads(sidecar_path.read_text())
    assert meta["shape"] == [6, 4] and meta["dtype"] == "float32" and len(meta["sha256"]) == 64
    (entry,) = cache.entries()
    assert (entry.component, entry.dataset, entry.split) == ("enc", "data", "train")
    assert entry.shape == (6, 4) and entry.nbytes > 96


def test_clear_by_age(cache):
    cache.get_or_compute("old", "data", "train", Counter())
    cache.get_or_compute("new", "data", "train", Counter())
    _, old_sidecar = cache.paths_for("old", "data", "train")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old_sidecar, (ten_days_ago, ten_days_ago))
    stale_tmp = old_sidecar.parent / ".train.npy.zz.tmp"
    stale_tmp.write_bytes(b"partial")
    os.utime(stale_tmp, (ten_days_ago, ten_days_ago))

    assert cache.clear(older_than=timedelta(days=7)) == 1
    assert [e.component for e in cache.entries()] == ["new"]
    assert not stale_tmp.exists()
    assert cache.clear() == 1 and cache.entries() == []
