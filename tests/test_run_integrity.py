"""What a run reads back is checked: a damaged run.json is rebuilt from the cells, a damaged
arrays file is recomputed, a second run on the same directory is refused, and a setting the
data refutes stops the run before any encoding. Each through the CLI, as a user runs it.

The tiny suite runs once for the module (``pristine_run``); a test that damages a run gets
its own copy (``finished_run``), and its reruns share the module's feature cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from clitools import run_cli
from testhelpers import TINY_SUITE_HEAD

SUITE = TINY_SUITE_HEAD + """
[systems.concat]
fusion_head = {{ name = "concat", epochs = 2, hidden = 32 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = {k} }}

[tasks.coco-category]
"""


def write_suite(tmp_path, demo_world, k: int = 5):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(SUITE.format(name="tiny", root=demo_world, k=k)))
    return path


def cells(run_dir) -> dict:
    return {p.relative_to(run_dir).as_posix(): json.loads(p.read_text())["metrics"]
            for p in sorted((run_dir / "cells").rglob("seed-*.json"))}


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory, demo_world):
    """(suite, run directory, feature cache) of one finished run; never modified."""
    root = tmp_path_factory.mktemp("integrity")
    suite = write_suite(root, demo_world)
    run_dir = root / "run"
    first = run_cli("run", str(suite), "--out", str(run_dir), "-q", cache=root / "cache")
    assert first.returncode == 0, first.stderr
    return suite, run_dir, root / "cache"


@pytest.fixture
def finished_run(tmp_path, pristine_run):
    """(suite, run directory, feature cache): a private copy of the finished run."""
    suite, pristine, cache = pristine_run
    run_dir = tmp_path / "run"
    shutil.copytree(pristine, run_dir)
    return suite, run_dir, cache


def rerun(cache, suite, run_dir):
    return run_cli("run", str(suite), "--out", str(run_dir), "-q", cache=cache)


def test_a_damaged_run_json_is_rebuilt_and_no_finished_cell_is_forgotten(finished_run):
    suite, run_dir, cache = finished_run
    before = cells(run_dir)
    text = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(text[: len(text) // 2])  # a truncated write
    again = rerun(cache, suite, run_dir)
    assert again.returncode == 0, again.stderr
    assert "run.json is damaged" in again.stderr and "rebuilt its 1 task(s)" in again.stderr
    assert "0 cells run, 4 already finished" in again.stdout
    assert cells(run_dir) == before
    run = json.loads((run_dir / "run.json").read_text())
    assert run["tasks"]["coco-category"]["main_metric"] == "weighted_f1"
    board = run_cli("leaderboard", str(run_dir))
    assert board.returncode == 0 and "knn-exact" in board.stdout and "not run" not in board.stdout


def test_a_damaged_arrays_file_is_named_and_its_cell_recomputed(finished_run):
    suite, run_dir, cache = finished_run
    before = cells(run_dir)
    arrays = run_dir / "cells/coco-category/knn-exact/seed-1.npz"
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    arrays.write_bytes(bytes(data))
    # the leaderboard names the file in one line and publishes nothing rather than use it
    board = run_cli("leaderboard", str(run_dir))
    assert board.returncode == 2
    assert board.stderr.strip().splitlines() == [
        f"error: {arrays}: damaged (checksum mismatch); ravlm-bench run recomputes the cell"]
    again = rerun(cache, suite, run_dir)
    assert again.returncode == 0, again.stderr
    assert f"{arrays} is damaged (checksum mismatch)" in again.stderr
    assert "1 cells run, 3 already finished" in again.stdout
    assert cells(run_dir) == before  # recomputed to the same numbers
    assert "damaged" not in run_cli("leaderboard", str(run_dir)).stderr


def test_a_second_run_on_the_same_directory_is_refused(finished_run):
    suite, run_dir, cache = finished_run
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".lock").write_text(json.dumps({"pid": holder.pid,
                                                   "host": os.uname().nodename}))
        refused = rerun(cache, suite, run_dir)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: {run_dir} is in use by another run (pid {holder.pid} on "
            f"{os.uname().nodename}, {run_dir / '.lock'}); wait for it, or use another --out"]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    again = rerun(cache, suite, run_dir)
    assert again.returncode == 0, again.stderr
    assert "taking over a lock left by pid" in again.stderr
    assert not (run_dir / ".lock").exists()


def test_k_at_the_knowledge_base_size_stops_before_any_encoding(tmp_path, demo_world):
    suite = write_suite(tmp_path, demo_world, k=10_000)
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {suite}: [systems.knn-exact] fusion_head: k = 10000 "
                                f"is not below the ")
    assert not list((tmp_path / "cache" / "features").rglob("*.npy"))  # nothing encoded
    assert not (tmp_path / "run" / "cells").exists()


def test_with_on_bad_image_skip_an_undecodable_image_is_left_out_and_counted(
        tmp_path, demo_copy):
    """A truncated JPEG (its header intact, so the cheap load-time check passes it) is
    dropped from the task before encoding, not a failed cell."""
    coco = demo_copy("coco")
    victim = sorted((coco / "val2017").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    suite = tmp_path / "skip.toml"
    suite.write_text(textwrap.dedent(SUITE.format(name="skip", root=tmp_path, k=5)).replace(
        f'root = "{tmp_path}/coco"', f'root = "{coco}"\non_bad_image = "skip"'))
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "-q",
                     cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "1 images cannot be decoded and are left out of every split" in result.stderr
    assert victim.name in result.stderr
    cell = json.loads((tmp_path / "run/cells/coco-category/knn-exact/seed-0.json").read_text())
    assert cell["status"] == "ok" and cell["details"]["skipped_images"] == 1


def test_a_cell_record_damaged_but_still_json_is_caught_by_its_checksum(finished_run):
    suite, run_dir, cache = finished_run
    before = cells(run_dir)
    path = run_dir / "cells/coco-category/knn-exact/seed-0.json"
    record = json.loads(path.read_text())
    record["metrics"]["weighted_f1"] = 0.999  # parses fine: only the checksum can tell
    path.write_text(json.dumps(record))
    board = run_cli("leaderboard", str(run_dir))
    assert board.returncode == 2
    assert board.stderr.strip() == (f"error: {path} is damaged (its content does not match "
                                    f"its checksum); ravlm-bench run recomputes it")
    again = rerun(cache, suite, run_dir)
    assert again.returncode == 0, again.stderr
    assert f"{path} is damaged (its content does not match its checksum)" in again.stderr
    assert cells(run_dir) == before
