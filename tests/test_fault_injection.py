"""Fault injection through the CLI, with a small budget of the fault_injection package's
cases: killed runs and publishes resume to an uninterrupted run's results, every damage to
every kind of file a rerun reads back ends in correct results or one error line naming the
file, and fuzzed suites and COCO files end in exit 2 with one line or a sane run.

Each test asserts that no case broke that contract; a failure prints every BAD case with
the steps to reproduce it (the package's own report). All of them are slow: together they
take several minutes."""

from __future__ import annotations

import pytest
from fault_injection.coco_fuzz import run_coco_fuzz
from fault_injection.contract import BAD, CLEAN
from fault_injection.damage import DAMAGES, FILE_KINDS, run_damage
from fault_injection.kills import kill_stages, run_kills, run_leaderboard_kills
from fault_injection.lab import prepare
from fault_injection.launcher import Launcher
from fault_injection.report import bad_report
from fault_injection.suite_fuzz import SUITE_CORPUS, run_suite_fuzz


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The baseline (the tiny suite, uninterrupted, from an empty cache) and the warm fork
    server every case's CLI calls come from."""
    lab = prepare(tmp_path_factory.mktemp("faults"), seed=0)
    yield lab
    lab.launcher.close()


def assert_no_bad(cases) -> None:
    bad = [case for case in cases if case.outcome == BAD]
    assert not bad, "\n" + bad_report(cases, examples=None)


@pytest.mark.slow
def test_forked_cli_calls_behave_like_fresh_interpreters(lab, tmp_path):
    fresh = Launcher(tmp_path, fresh=True, env=lab.env())
    missing = str(tmp_path / "missing.toml")
    for args in (["run", missing, "-q"], ["leaderboard", str(lab.baseline / "run"), "-q",
                                          "--format", "md", "--out", str(tmp_path / "md")]):
        forked_call = lab.launcher.run(args, lab.env(), lab.out)
        fresh_call = fresh.run(args, lab.env(), lab.out)
        assert (forked_call.rc, forked_call.stdout, forked_call.stderr) == \
            (fresh_call.rc, fresh_call.stdout, fresh_call.stderr)
    assert forked_call.rc == 0 and "knn-exact" in forked_call.stdout


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_results(lab):
    stages = {*kill_stages(), "timed"}
    cases = run_kills(lab, count=len(stages))
    assert {case.key.split(":")[0] for case in cases} == stages  # one kill in every stage
    assert_no_bad(cases)


@pytest.mark.slow
def test_a_killed_leaderboard_publish_republishes_the_same_files(lab):
    cases = run_leaderboard_kills(lab, count=2)
    assert len(cases) == 2
    assert_no_bad(cases)


@pytest.mark.slow
def test_every_damage_to_every_file_a_rerun_reads_is_recomputed_or_named(lab):
    cases = run_damage(lab, rounds=1)
    tried = {tuple(case.key.rsplit(" / ", 1)) for case in cases}
    assert tried == {(kind.name, how) for kind in FILE_KINDS for how in DAMAGES}
    assert_no_bad(cases)


@pytest.mark.slow
def test_fuzzed_suites_exit_2_with_one_line_or_run_sanely(lab):
    cases = run_suite_fuzz(lab, count=15)  # and the corpus of cases once found BAD
    assert len(cases) == 15 + len(SUITE_CORPUS)
    assert any(case.outcome == CLEAN for case in cases)
    assert_no_bad(cases)


@pytest.mark.slow
def test_fuzzed_coco_annotations_exit_2_with_one_line_or_run_sanely(lab):
    cases = run_coco_fuzz(lab, count=15)
    assert len(cases) == 15
    assert_no_bad(cases)
