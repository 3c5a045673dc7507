"""Entry-point discovery through a real distribution, and the CLI's ways in: the installed
console script and ``python -m ravlm_bench`` each as a fresh process, the rest in process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clitools import run_cli, spawn_cli

import ravlm_bench


def write_distribution(site: Path, name: str, module_source: str, entry_point: str) -> None:
    """A distribution as an installer leaves it: the module plus a .dist-info directory."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{module}-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[ravlm_bench]\n{entry_point} = {module}\n")


GOOD_RETRIEVER = """
    import numpy as np
    from ravlm_bench.api import hookimpl

    class Flat:
        def __init__(self, dim, metric):
            self.dim = dim

        def build(self, vectors, keys):
            self.vectors, self.keys = vectors, keys

        def search(self, queries, k):
            scores = queries @ self.vectors.T
            order = np.argsort(-scores, axis=1)[:, :k]
            return self.keys[order], np.take_along_axis(scores, order, 1)

    @hookimpl
    def register_retrievers(register):
        register("third-party-flat", Flat, description="from an installed distribution")
"""


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site"
    path.mkdir()
    return path


def test_entry_point_of_an_installed_distribution_is_found(site):
    write_distribution(site, "ravlm-thirdparty", GOOD_RETRIEVER, "thirdparty")
    result = run_cli("list", "retrievers", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["third-party-flat"]["plugin"] == "thirdparty"

    plugins = run_cli("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert plugins.returncode == 0, plugins.stderr
    row = next(r for r in json.loads(plugins.stdout) if r["plugin"] == "thirdparty")
    assert row["distribution"] == "ravlm-thirdparty 0.3.0"
    assert row["hooks"] == ["register_retrievers"]
    assert row["components"] == {"retrievers": ["third-party-flat"]}
    assert row["status"] == "ok"


def test_broken_entry_point_is_reported_not_fatal_unless_strict(site):
    write_distribution(site, "ravlm-broken", "import not_a_module_anywhere\n", "broken")
    env = {"PYTHONPATH": str(site)}
    result = run_cli("list", "retrievers", env=env)
    assert result.returncode == 0
    assert ("plugin 'broken' (distribution 'ravlm-broken', entry point 'broken') is broken: "
            "ModuleNotFoundError: No module named 'not_a_module_anywhere'") in result.stderr
    plugins = run_cli("plugins", "--json", env=env)
    row = next(r for r in json.loads(plugins.stdout) if r["plugin"] == "broken")
    assert row["status"].startswith("broken: ModuleNotFoundError")

    strict = run_cli("--strict", "list", "retrievers", env=env)
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines()[-1].startswith("error: plugin 'broken'")


def test_disable_switches_an_entry_point_off(site):
    write_distribution(site, "ravlm-thirdparty", GOOD_RETRIEVER, "thirdparty")
    env = {"PYTHONPATH": str(site)}
    for args, extra_env in ((["--disable", "thirdparty"], {}), (["-p", "no:thirdparty"], {}),
                            ([], {"RAVLM_BENCH_DISABLE": "thirdparty"})):
        result = run_cli(*args, "list", "retrievers", "--json", env={**env, **extra_env})
        assert result.returncode == 0, result.stderr
        assert "third-party-flat" not in {r["name"] for r in json.loads(result.stdout)}


def test_local_plugin_file_with_p(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(GOOD_RETRIEVER))
    result = run_cli("list", "retrievers", "-p", str(path))
    assert result.returncode == 0, result.stderr
    assert "third-party-flat" in result.stdout and "mine" in result.stdout


def test_the_console_script_gives_the_version_and_exits_2_on_bad_usage():
    script = Path(sys.executable).parent / "ravlm-bench"  # what pip install put beside it
    assert script.is_file(), f"{script}: install the package first (pip install -e .)"

    def console(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], capture_output=True, text=True,
                              timeout=300)

    result = console("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ravlm-bench {ravlm_bench.__version__}"
    bad_kind = console("list", "retriever")
    assert bad_kind.returncode == 2 and "invalid choice: 'retriever'" in bad_kind.stderr
    assert console("no-such-command").returncode == 2


def test_every_reference_plugin_loads_in_a_fresh_interpreter():
    result = spawn_cli("--strict", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["plugin"]: r for r in json.loads(result.stdout)}
    for name in ("image_encoders", "text_encoders", "retrievers", "fusion_heads", "datasets",
                 "tasks", "publishers", "attribution_retrievers", "efficientnet"):
        assert rows[name]["status"] == "ok"
        assert rows[name]["distribution"].startswith("ravlm-bench ")


def test_a_call_in_process_answers_as_a_fresh_interpreter_and_leaves_no_trace(tmp_path):
    """What most tests use (``run_cli``, in process) against a child (``spawn_cli``): the
    same exit status, stdout and stderr, and the state the tests share is put back."""
    import logging
    import os

    import torch

    def shared_state():
        return (dict(os.environ), os.getcwd(), list(sys.path), logging.getLogger().handlers[:],
                logging.getLogger().level, torch.get_num_threads())

    before = shared_state()
    suite = tmp_path / "missing.toml"
    for args in (["--version"], ["list", "retriever"], ["list", "retrievers", "--json"],
                 ["--quiet", "run", str(suite), "--out", str(tmp_path / "run")]):
        inside, child = run_cli(*args), spawn_cli(*args)
        assert (inside.returncode, inside.stdout, inside.stderr) == \
            (child.returncode, child.stdout, child.stderr), args
    assert inside.returncode == 2 and str(suite) in inside.stderr
    assert shared_state() == before


def test_an_unexpected_error_is_one_line_and_its_own_exit_code(monkeypatch, capsys):
    from ravlm_bench import cli
    from ravlm_bench.cli import plugins_cmd

    def broken(ctx):
        raise RuntimeError("a bug in a command")

    monkeypatch.setattr(plugins_cmd, "show_plugins", broken)
    assert cli.main(["plugins"]) == cli.INTERNAL_ERROR == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: RuntimeError: a bug in a command (rerun with --debug for the "
                     "traceback)"]
    with pytest.raises(RuntimeError, match="a bug in a command"):
        cli.main(["--debug", "plugins"])
