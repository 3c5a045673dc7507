"""`ravlm-bench leaderboard`: publishers found through the installed entry point."""

from __future__ import annotations

import pytest
from test_leaderboard import build_run

from ravlm_bench.cli import main

ALL_FILES = {"leaderboard.md", "leaderboard.csv", "overview.csv", "leaderboard.json",
             "leaderboard.tex", "leaderboard.html", "leaderboard.png", "fronts.png",
             "fronts.svg", "explorer.html", "dependence.png"}


@pytest.fixture
def run_dir(tmp_path):
    return build_run(tmp_path, failed={
        ("shape-retrieval", "xattn", 2): ("fusion_heads", "fit_pairs raised ValueError")})


def test_writes_every_format_by_default_and_prints_the_table(run_dir, capsys):
    assert main(["leaderboard", str(run_dir)]) == 0
    out = capsys.readouterr().out
    default_out = run_dir / "leaderboard"
    assert {p.name for p in default_out.iterdir()} == ALL_FILES
    assert "Overview (main metric per task)" in out and "xattn" in out
    assert "failed: xattn: seed 2: plugin 'fusion_heads': fit_pairs raised ValueError" in out
    wrote = {line.split()[-1] for line in out.splitlines() if line.startswith("wrote ")}
    assert wrote == {str(default_out / name) for name in ALL_FILES}


def test_chosen_formats_to_a_chosen_directory(run_dir, tmp_path, capsys):
    out_dir = tmp_path / "published"
    assert main(["leaderboard", str(run_dir), "--format", "md, csv", "--out", str(out_dir)]) == 0
    assert {p.name for p in out_dir.iterdir()} == {"leaderboard.md", "leaderboard.csv",
                                                    "overview.csv"}
    assert not (run_dir / "leaderboard").exists()


@pytest.mark.parametrize("argv_tail, message", [
    (["--format", "pdf"], "unknown publisher 'pdf'"),
    (["--format", "markdwon"], "did you mean 'markdown'?"),
    (["--format", ","], "names no format"),
])
def test_bad_formats_are_one_line_errors(run_dir, capsys, argv_tail, message):
    assert main(["leaderboard", str(run_dir), *argv_tail]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_missing_or_invalid_run_directory_exits_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run directory" in err and "\n" not in err
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.json: not found" in err and "\n" not in err
