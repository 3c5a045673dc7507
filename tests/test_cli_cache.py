"""`ravlm-bench cache ls` and `ravlm-bench cache clear`."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from ravlm_bench.cli import main
from ravlm_bench.store.feature_cache import FeatureCache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAVLM_BENCH_CACHE", str(tmp_path))
    cache = FeatureCache()
    for component in ("resnet18-aaa", "minilm-l6-bbb"):
        cache.get_or_compute(component, "demo-coco-1234", "train/images",
                             lambda: np.zeros((10, 8), np.float32))
    return cache


def test_ls_shows_entries(cache, capsys):
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "resnet18-aaa" in out and "minilm-l6-bbb" in out and "10x8" in out
    assert "2 entries" in out


def test_ls_json(cache, capsys):
    assert main(["cache", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["component"] for r in rows) == ["minilm-l6-bbb", "resnet18-aaa"]
    assert all(r["shape"] == [10, 8] and r["split"] == "train/images" for r in rows)


def test_ls_empty(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAVLM_BENCH_CACHE", str(tmp_path))
    assert main(["cache", "ls"]) == 0
    assert "is empty" in capsys.readouterr().out


def test_clear_older_than_keeps_recent_entries(cache, capsys):
    _, sidecar = cache.paths_for("resnet18-aaa", "demo-coco-1234", "train/images")
    old = time.time() - 8 * 86400
    os.utime(sidecar, (old, old))
    assert main(["cache", "clear", "--older-than", "7d"]) == 0
    assert "removed 1 feature cache entry not used for 7d" in capsys.readouterr().out
    assert [e.component for e in cache.entries()] == ["minilm-l6-bbb"]
    assert main(["cache", "clear"]) == 0
    assert "removed 1 feature cache entry from" in capsys.readouterr().out
    assert cache.entries() == []


def test_clear_rejects_a_bad_duration(cache, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["cache", "clear", "--older-than", "soon"])
    assert excinfo.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err
