"""The README's "write a retriever plugin" tutorial, copied as printed, installs and works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(?:python|toml)\n# file: (?P<path>\S+)\n(?P<body>.*?)```", re.S)


def tutorial_files() -> dict[str, str]:
    text = README.read_text()
    return {m["path"]: f"# file: {m['path']}\n{m['body']}" for m in BLOCK.finditer(text)}


def install_tutorial_package(tmp_path: Path) -> dict:
    """The tutorial's three files written as printed and the package installed into a
    folder of its own; the environment that puts it on the path."""
    files = tutorial_files()
    assert set(files) == {"ravlm-numpy-flat/pyproject.toml",
                          "ravlm-numpy-flat/ravlm_numpy_flat.py",
                          "ravlm-numpy-flat/test_numpy_flat.py"}
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(tmp_path / "ravlm-numpy-flat")],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    return {**os.environ, "PYTHONPATH": str(site)}


def test_tutorial_package_installs_and_is_listed(tmp_path):
    env = install_tutorial_package(tmp_path)

    listed = subprocess.run([sys.executable, "-m", "ravlm_bench", "list", "retrievers", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    row = rows["numpy-flat"]
    assert (row["name"], row["plugin"], row["description"]) == (
        "numpy-flat", "numpy_flat", "brute force in numpy")
    assert row["params_declared"] is True
    assert [(p["name"], p["type"], p["default"]) for p in row["params"]] == [
        ("chunk", "int", 1024)]

    conformance = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "ravlm-numpy-flat" / "test_numpy_flat.py")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert conformance.returncode == 0, conformance.stdout + conformance.stderr
    assert "1 passed" in conformance.stdout


@pytest.mark.slow
def test_the_tutorials_retriever_benchmark_runs_in_one_command(tmp_path):
    """`ravlm-bench run retrievers --retriever numpy-flat`, as the tutorial ends: an exact
    brute-force retriever matches exact search row for row in the published table."""
    env = {**install_tutorial_package(tmp_path), "RAVLM_BENCH_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "ravlm_bench", "run", "retrievers", "--retriever", "numpy-flat",
         "--out", str(tmp_path / "runs/retrievers"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=1500, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    board = subprocess.run(
        [sys.executable, "-m", "ravlm_bench", "leaderboard", str(tmp_path / "runs/retrievers"),
         "--format", "json", "--out", str(tmp_path / "board")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    table = json.loads((tmp_path / "board/leaderboard.json").read_text())["tasks"]["infoseek"]
    rows = {row["system"]: row for row in table["rows"]}
    assert set(rows) == {"reader-candidate[retriever=numpy-flat]", "reader-exact",
                         "reader-hnsw[expansion_search=16]", "reader-hnsw[expansion_search=64]",
                         "reader-hnsw[expansion_search=256]", "reader-random"}
    flat, exact = rows["reader-candidate[retriever=numpy-flat]"], rows["reader-exact"]
    assert flat["recall_vs_exact"] == 1.0
    assert flat["infoseek_score"] == exact["infoseek_score"]
    assert flat["delta_vs_baseline"] == 0.0
    for column in ("retrieval_qps", "index_build_s", "pseudo_recall_at_k",
                   "evidence_recall_at_k", "retrieval_dependence"):
        assert flat[column] is not None, column
    assert rows["reader-random"]["infoseek_score"] < exact["infoseek_score"]
