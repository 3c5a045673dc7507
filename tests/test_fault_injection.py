"""Fault injection through the CLI, with a small budget of scripts/inject_faults.py's cases:
killed runs and publishes resume to an uninterrupted run's results, every damage to every
kind of file a rerun reads back ends in correct results or one error line naming the file,
and fuzzed suites and COCO files end in exit 2 with one line or a sane run.

Each test asserts that no case broke that contract; a failure prints every BAD case with
the steps to reproduce it (the script's own report)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "inject_faults.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("inject_faults", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


faults = _load_script()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The baseline (the tiny suite, uninterrupted, from an empty cache) and the warm fork
    server every case's CLI calls come from."""
    lab = faults.prepare(tmp_path_factory.mktemp("faults"), seed=0)
    yield lab
    lab.launcher.close()


def assert_no_bad(cases) -> None:
    bad = [case for case in cases if case.outcome == faults.BAD]
    assert not bad, "\n" + faults.bad_report(cases, examples=None)


def test_forked_cli_calls_behave_like_fresh_interpreters(lab, tmp_path):
    fresh = faults.Launcher(tmp_path, fresh=True, env=lab.env())
    missing = str(tmp_path / "missing.toml")
    for args in (["run", missing, "-q"], ["leaderboard", str(lab.baseline / "run"), "-q",
                                          "--format", "md", "--out", str(tmp_path / "md")]):
        forked_call = lab.launcher.run(args, lab.env(), lab.out)
        fresh_call = fresh.run(args, lab.env(), lab.out)
        assert (forked_call.rc, forked_call.stdout, forked_call.stderr) == \
            (fresh_call.rc, fresh_call.stdout, fresh_call.stderr)
    assert forked_call.rc == 0 and "knn-exact" in forked_call.stdout


def test_killed_runs_resume_to_the_uninterrupted_results(lab):
    stages = {*faults.kill_stages(), "timed"}
    cases = faults.run_kills(lab, count=len(stages))
    assert {case.key.split(":")[0] for case in cases} == stages  # one kill in every stage
    assert_no_bad(cases)


def test_a_killed_leaderboard_publish_republishes_the_same_files(lab):
    cases = faults.run_leaderboard_kills(lab, count=2)
    assert len(cases) == 2
    assert_no_bad(cases)


def test_every_damage_to_every_file_a_rerun_reads_is_recomputed_or_named(lab):
    cases = faults.run_damage(lab, rounds=1)
    tried = {tuple(case.key.rsplit(" / ", 1)) for case in cases}
    assert tried == {(kind.name, how) for kind in faults.FILE_KINDS for how in faults.DAMAGES}
    assert_no_bad(cases)


def test_fuzzed_suites_exit_2_with_one_line_or_run_sanely(lab):
    cases = faults.run_suite_fuzz(lab, count=15)  # and the corpus of cases once found BAD
    assert len(cases) == 15 + len(faults.SUITE_CORPUS)
    assert any(case.outcome == faults.CLEAN for case in cases)
    assert_no_bad(cases)


def test_fuzzed_coco_annotations_exit_2_with_one_line_or_run_sanely(lab):
    cases = faults.run_coco_fuzz(lab, count=15)
    assert len(cases) == 15
    assert_no_bad(cases)
