"""A run stopped by a signal: SIGTERM is handled as Ctrl-C is (one line, the lock released,
finished cells kept, a rerun resumes to the same results), exiting 143; SIGINT keeps 130.
The stopped run is a real child process, signalled once its first cell is written."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import cli_command, cli_env, run_cli, user_signals
from testhelpers import TINY_SUITE_HEAD

# concat's 40 epochs make each of its cells last about a second: the signal lands
# mid-run, and the 4 cells (2 systems x 2 seeds) are not all done
SUITE = TINY_SUITE_HEAD + """
[systems.concat]
fusion_head = {{ name = "concat", epochs = 40, hidden = 64 }}

[systems.knn-exact]
retriever = "exact"
fusion_head = {{ name = "knn", k = 5 }}

[tasks.coco-category]
"""


def cell_metrics(run_dir: Path) -> dict:
    return {str(path.relative_to(run_dir)): json.loads(path.read_text())["metrics"]
            for path in sorted((run_dir / "cells").rglob("seed-*.json"))}


def stopped_run(suite: Path, run_dir: Path, cache: Path,
                signum: int) -> subprocess.CompletedProcess:
    """``ravlm-bench run`` in a child, sent ``signum`` once its first cell file exists."""
    process = subprocess.Popen(cli_command("run", str(suite), "--out", str(run_dir), "--quiet"),
                               env=cli_env(cache), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=user_signals)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any((run_dir / "cells").rglob("seed-*.json")):
            break
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_sigterm_stops_a_run_like_ctrl_c_and_a_rerun_resumes(tmp_path, demo_world):
    """About 11-15 s: under the ~20 s that would make it a slow test."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.format(name="tiny", root=demo_world))
    cache = tmp_path / "cache"
    stopped = tmp_path / "stopped"
    result = stopped_run(suite, stopped, cache, signal.SIGTERM)
    assert result.returncode == 143, result.stderr
    # one line, the last (before it: the random ResNet's warning, and the bar transformers
    # draws while loading the text encoder from a fresh cache, --quiet or not)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"terminated (SIGTERM); the finished cells in {stopped} are kept, "
                         f"and a rerun resumes")
    assert sum("terminated" in line or "Traceback" in line for line in lines) == 1, lines
    assert not (stopped / ".lock").exists()
    kept = cell_metrics(stopped)
    assert 1 <= len(kept) < 4, "the run should have been stopped part-way"  # 2 x 2 seeds

    resumed = run_cli("run", str(suite), "--out", str(stopped), "--quiet", cache=cache)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{4 - len(kept)} cells run, {len(kept)} already finished" in resumed.stdout
    whole = tmp_path / "whole"
    uninterrupted = run_cli("run", str(suite), "--out", str(whole), "--quiet", cache=cache)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert cell_metrics(stopped) == cell_metrics(whole)
    assert {k: v for k, v in cell_metrics(stopped).items() if k in kept} == kept


@pytest.mark.slow
def test_sigint_still_exits_130_and_releases_the_lock(tmp_path, demo_world):
    """What SIGTERM now copies, unchanged (slow: a second child run for a known path)."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.format(name="tiny", root=demo_world))
    stopped = tmp_path / "stopped"
    result = stopped_run(suite, stopped, tmp_path / "cache", signal.SIGINT)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "interrupted"
    assert not (stopped / ".lock").exists()


def test_the_sigterm_handler_is_the_run_commands_alone_and_is_put_back():
    """Installed while a run runs, not on import, and the one before restored: the CLI is
    called in-process by tests and by anyone embedding it."""
    before = signal.getsignal(signal.SIGTERM)
    from ravlm_bench.cli.run_cmd import _sigterm_stops
    from ravlm_bench.foundation.errors import Terminated

    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(Terminated, match="stopped here"):
        with _sigterm_stops("stopped here"):
            assert signal.getsignal(signal.SIGTERM) is not before
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
