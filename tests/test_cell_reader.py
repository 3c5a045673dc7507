"""One checked reader for a cell's arrays: every reader that publishes refuses a tampered
arrays file with one line naming it (the CLI exits 2), and the runner's resume names the
cell and recomputes it.

The run is ``build_run``'s (test_leaderboard.py), written through the ledger as the runner
writes it; each test damages its own copy.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from clitools import run_cli
from test_leaderboard import _cell_path, build_run

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.publish.compare import compare_runs
from ravlm_bench.publish.leaderboard import load_run
from ravlm_bench.store.cell_files import (
    CellArraysError,
    array_names,
    arrays_path,
    read_arrays,
    verified_bytes,
)
from ravlm_bench.store.explorer_arrays import cell_items, explorable_cells
from ravlm_bench.store.ledger import RunLedger

TASK, SYSTEM, SEED = "shape-category", "xattn", 1


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def run_dir(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def cell(run_dir: Path) -> tuple[Path, dict]:
    path = _cell_path(run_dir, TASK, SYSTEM, SEED)
    return path, json.loads(path.read_text())


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))


def tamper(run_dir: Path) -> Path:
    """Flip one byte of the cell's arrays file; returns the file."""
    npz = arrays_path(_cell_path(run_dir, TASK, SYSTEM, SEED))
    flip_a_byte(npz)
    return npz


def damaged_line(npz: Path) -> str:
    return f"{npz}: damaged (checksum mismatch); ravlm-bench run recomputes the cell"


# -- the reader ----------------------------------------------------------------------------


def test_intact_arrays_are_read_whole_or_by_name(run_dir):
    path, record = cell(run_dir)
    every = read_arrays(path, record["arrays_sha256"])
    with np.load(arrays_path(path)) as direct:
        assert sorted(every) == sorted(direct.files)
        assert all(np.array_equal(every[name], direct[name]) for name in direct.files)
    replicates = read_arrays(path, record["arrays_sha256"],
                             wanted=lambda name: name.startswith("replicate."))
    assert replicates and all(name.startswith("replicate.") for name in replicates)
    assert sorted(array_names(path, record["arrays_sha256"])) == sorted(every)


def test_a_tampered_missing_or_unreadable_file_is_one_line_naming_it(run_dir):
    path, record = cell(run_dir)
    npz = tamper(run_dir)
    with pytest.raises(CellArraysError) as info:
        read_arrays(path, record["arrays_sha256"])
    assert str(info.value) == damaged_line(npz)
    assert (info.value.path, info.value.problem) == (npz, "damaged (checksum mismatch)")
    assert isinstance(info.value, DataError)  # the CLI's exit 2

    npz.unlink()
    with pytest.raises(CellArraysError, match="missing; ravlm-bench run recomputes") as info:
        verified_bytes(path, record["arrays_sha256"])
    assert str(info.value).startswith(f"{npz}: missing")

    # no checksum recorded (an older cell): the file is taken as it is, and one that does
    # not load is named; a rerun keeps such a cell, so only --force replaces it
    npz.write_bytes(b"PK\x03\x04 not an archive")
    with pytest.raises(CellArraysError) as info:
        read_arrays(path, None)
    message = str(info.value)
    assert message.startswith(f"{npz}: unreadable (") and "\n" not in message
    assert message.endswith("ravlm-bench run --force recomputes the cell")
    with npz.open("wb") as handle:  # one .npy array where an archive belongs
        np.save(handle, np.arange(3))
    with pytest.raises(CellArraysError, match="unreadable \\(a single array, not an .npz"):
        array_names(path, None)


# -- the readers that publish --------------------------------------------------------------


def test_the_leaderboard_refuses_tampered_arrays(run_dir):
    npz = tamper(run_dir)
    with pytest.raises(DataError) as info:
        load_run(run_dir)
    assert str(info.value) == damaged_line(npz)
    load_run(run_dir, tables=False)  # the records alone are intact
    board = run_cli("leaderboard", str(run_dir), "--format", "json", "--out",
                    str(run_dir / "board"))
    assert board.returncode == 2
    assert board.stderr.strip().splitlines() == [f"error: {damaged_line(npz)}"]
    assert not (run_dir / "board").exists()


def test_compare_refuses_a_run_with_tampered_arrays(pristine, run_dir):
    npz = tamper(run_dir)
    with pytest.raises(DataError, match="damaged"):
        compare_runs(pristine, run_dir)
    for a, b in ((pristine, run_dir), (run_dir, pristine)):
        done = run_cli("compare", str(a), str(b), "--metric", "all")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [f"error: {damaged_line(npz)}"]


def test_show_refuses_tampered_arrays(run_dir):
    npz = tamper(run_dir)
    shown = run_cli("show", str(run_dir), TASK, SYSTEM, "--seed", str(SEED))
    assert shown.returncode == 2
    assert shown.stderr.strip().splitlines() == [f"error: {damaged_line(npz)}"]
    with pytest.raises(DataError, match="damaged"):
        cell_items(run_dir, TASK, SYSTEM, SEED)


def test_the_explorer_refuses_tampered_arrays(run_dir, tmp_path):
    from ravlm_plugins.publishers.explorer_page import ExplorerPublisher

    board = load_run(run_dir, tables=False)  # read before the damage, as a race would
    npz = tamper(run_dir)
    with pytest.raises(DataError) as info:
        explorable_cells(board)
    assert str(info.value) == damaged_line(npz)
    with pytest.raises(DataError) as info:
        ExplorerPublisher().publish(board, tmp_path / "board")
    assert str(info.value) == damaged_line(npz)
    assert not (tmp_path / "board" / "explorer.html").exists()
    published = run_cli("leaderboard", str(run_dir), "--format", "explorer", "--out",
                        str(tmp_path / "board"))
    assert published.returncode == 2
    assert published.stderr.strip().splitlines() == [f"error: {damaged_line(npz)}"]


# -- the runner's resume -------------------------------------------------------------------


def test_resume_names_a_tampered_cell_and_recomputes_it(run_dir, caplog):
    ledger = RunLedger(run_dir, writes=False)
    assert ledger.finished(TASK, SYSTEM, SEED) is not None
    npz = tamper(run_dir)
    with caplog.at_level(logging.WARNING):
        assert ledger.finished(TASK, SYSTEM, SEED) is None
    assert f"{npz} is damaged (checksum mismatch); the cell {TASK} / {SYSTEM} / seed " \
           f"{SEED} is recomputed" in caplog.text
    npz.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ledger.finished(TASK, SYSTEM, SEED) is None
    assert f"{npz} is missing; the cell" in caplog.text
