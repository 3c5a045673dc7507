"""What a suite may say at its top level and in ``[run]``, and the old spellings it refuses:
each mistake is one line on stderr naming the suite file, the table and the fix (exit 2),
before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import run_cli

from ravlm_bench.config.suite import RunOptions, load_suite
from ravlm_bench.foundation.errors import ConfigError

SUITE = """
name = "options"
seeds = [0]

[data.coco]
root = "{root}"

[defaults]
image_encoder = {{ name = "resnet18" }}
text_encoder = {{ name = "minilm-l6" }}

[systems.plain]
fusion_head = {{ name = "concat" }}

[systems.ranker]
retriever = "exact"
joint_embedding = {{ name = "infonce" }}

[tasks.coco-category]
systems = ["plain"]

[tasks.coco-retrieval]
systems = ["ranker"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text.format(root=tmp_path / "nowhere"))
    return path


def refused(tmp_path: Path, suite: Path) -> str:
    """The one line ``ravlm-bench run`` printed when it refused ``suite`` (exit 2)."""
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {suite}: "), lines
    assert not (tmp_path / "run").exists()  # nothing was started
    return lines[0]


def test_the_run_table_is_parsed_once_into_typed_options(tmp_path):
    suite = load_suite(write(tmp_path, SUITE + '\n[run]\ndata_seed = 3\ndemo_size = "tiny"\n'))
    assert suite.run == RunOptions(data_seed=3, demo=False, demo_size="tiny")
    assert load_suite(write(tmp_path, SUITE)).run == RunOptions()  # no [run]: the defaults


@pytest.mark.parametrize("run_table, message", [
    ("data_sed = 1", "[run]: unknown parameter 'data_sed'; did you mean 'data_seed'?"),
    ("data_seed = -7", "[run]: parameter 'data_seed' = -7: must be >= 0"),
    ('demo_size = "huge"', "[run]: parameter 'demo_size' = \"huge\": expected one of"),
])
def test_a_bad_run_table_is_one_line_and_exit_2(tmp_path, run_table, message):
    suite = write(tmp_path, SUITE + f"\n[run]\n{run_table}\n")
    assert message in refused(tmp_path, suite)


def test_a_top_level_k_is_an_unknown_key(tmp_path):
    """``k`` belongs to a head's table; at the top level it used to be accepted and ignored."""
    suite = write(tmp_path, "k = 5\n" + SUITE)
    line = refused(tmp_path, suite)
    assert "unknown top-level key 'k'" in line and "(allowed: name, description, seeds" in line


def test_a_misspelt_top_level_key_gets_a_did_you_mean(tmp_path):
    with pytest.raises(ConfigError, match="unknown top-level key 'seed'; did you mean 'seeds'?"):
        load_suite(write(tmp_path, SUITE.replace("seeds = [0]", "seed = [0]")))


def test_a_joint_embedding_in_a_fusion_head_table_is_refused_with_the_fix(tmp_path):
    suite = write(tmp_path, SUITE.replace('joint_embedding = {{ name = "infonce" }}',
                                          'fusion_head = {{ name = "infonce" }}'))
    line = refused(tmp_path, suite)
    assert line == (f"error: {suite}: [systems.ranker] fusion_head: 'infonce' is a joint "
                    f"embedding, not a fusion head; write joint_embedding = "
                    f'{{ name = "infonce" }} instead')
