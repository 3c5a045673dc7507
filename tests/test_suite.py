"""Suite files: the built-in suites parse, and every mistake names the file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import run_cli
from testhelpers import load_builtin_suite

from ravlm_bench.config.suite import BUILTIN_SUITES, load_suite, resolve_suite_path
from ravlm_bench.foundation.errors import ConfigError

MINIMAL = """
seeds = [0, 1]
baseline = "plain"
[data.coco]
root = "/data/coco"
[defaults]
image_encoder = { name = "resnet18", image_size = 64 }
text_encoder = "minilm-l6"
[systems.plain]
fusion_head = { name = "concat", epochs = 2 }
[systems.retrieving]
retriever = "exact"
fusion_head = { name = "xattn", k = 4 }
text_encoder = { name = "bert-base-uncased", pooling = "cls" }
[tasks.coco-category]
captions_per_image = 2
[tasks.coco-retrieval]
systems = ["retrieving"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_minimal_suite_parses_with_defaults_and_overrides(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    assert suite.name == "suite" and suite.seeds == (0, 1) and suite.baseline == "plain"
    plain, retrieving = suite.systems["plain"], suite.systems["retrieving"]
    assert plain.image_encoder.as_dict() == {"name": "resnet18", "image_size": 64}
    assert plain.retriever is None
    assert retrieving.text_encoder.params == {"pooling": "cls"}
    assert retrieving.retriever.name == "exact"
    category, retrieval = suite.tasks
    assert category.params == {"captions_per_image": 2}
    assert category.systems == ("plain", "retrieving")
    assert retrieval.systems == ("retrieving",)
    assert len(suite.sha256) == 64


@pytest.mark.parametrize("path", sorted(BUILTIN_SUITES.glob("*.toml")), ids=lambda p: p.stem)
def test_builtin_suites_parse(path):
    suite = load_builtin_suite(path)
    assert suite.tasks and suite.systems


@pytest.mark.parametrize("change, message", [
    (("seeds = [0, 1]", "seeds = []"), "'seeds' must be a non-empty list of integers"),
    (("seeds = [0, 1]", "seeds = [1, 1]"), "'seeds' has duplicates"),
    (('baseline = "plain"', 'baseline = "plane"'), "baseline 'plane' is not a system"),
    (('systems = ["retrieving"]', 'systems = ["retreiving"]'),
     "[tasks.coco-retrieval] systems names 'retreiving', which is not a [systems.*] table"),
    (('fusion_head = { name = "concat", epochs = 2 }', 'fusion_head = { epochs = 2 }'),
     "[systems.plain] fusion_head must be a component name or a table with 'name'"),
    (('retriever = "exact"', 'retreiver = "exact"'),
     "[systems.retrieving] has unknown key 'retreiver'"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nseed = 3"), "unknown top-level key 'seed'"),
    (('text_encoder = "minilm-l6"\n', ''), "[systems.plain] has no text_encoder"),
])
def test_suite_mistakes_name_file_key_and_fix(tmp_path, change, message):
    path = write(tmp_path, MINIMAL.replace(*change, 1))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "seeds = [0,\n")
    with pytest.raises(ConfigError, match=r"suite.toml: not valid TOML"):
        load_suite(path)


def test_suite_names_resolve_to_builtin_files(tmp_path):
    assert resolve_suite_path(None).name == "demo.toml"
    assert resolve_suite_path("coco").name == "coco.toml"
    with pytest.raises(ConfigError,
                       match="no built-in suite 'cocoa'; built-in suites: aokvqa, coco, demo, "):
        resolve_suite_path("cocoa")
    with pytest.raises(ConfigError, match="no such suite file"):
        resolve_suite_path(str(tmp_path / "missing.toml"))


# -- validation against the registry, before any work ----------------------------------------

BAD_PARAMETERS = [
    ('fusion_head = { name = "knn", kk = 10 }',
     "[systems.broken] fusion_head: fusion head 'knn': unknown parameter 'kk'; "
     "did you mean 'k'?"),
    ('fusion_head = { name = "knn", k = "ten" }',
     "[systems.broken] fusion_head: fusion head 'knn': parameter 'k' = \"ten\": "
     "expected an integer"),
    ('fusion_head = { name = "knn", k = 0 }',
     "[systems.broken] fusion_head: fusion head 'knn': parameter 'k' = 0: must be >= 1"),
    ('fusion_head = { name = "knn" }\nretriever = { name = "exact", metric = "l2sq" }',
     "[systems.broken] retriever: retriever 'exact': parameter 'metric' is set by the harness"),
    ('fusion_head = { name = "knnn" }',
     "[systems.broken] fusion_head: unknown fusion head 'knnn'; did you mean 'knn'?"),
]


@pytest.mark.parametrize("line, message", BAD_PARAMETERS)
def test_a_bad_parameter_fails_before_any_work_with_exit_2(tmp_path, line, message):
    """One line naming the suite file, the system and the parameter; nothing encoded."""
    suite = tmp_path / "bad.toml"
    suite.write_text(f"""
name = "bad"
[data.coco]
root = "{tmp_path / 'nowhere'}"
[defaults]
image_encoder = {{ name = "resnet18" }}
text_encoder = {{ name = "minilm-l6" }}
[systems.broken]
{line}
[tasks.coco-category]
""")
    result = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {suite}: {message}"), lines
    assert not (tmp_path / "run").exists()  # nothing was started


def test_every_built_in_suite_validates_against_the_reference_plugins():
    from ravlm_bench.config.preflight import check_suite
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    registry = Registry(get_plugin_manager())
    for path in sorted(BUILTIN_SUITES.glob("*.toml")):
        suite = load_builtin_suite(path)
        check_suite(suite, registry)  # raises a ConfigError for the first problem
        for system in suite.systems.values():
            assert system.fusion_head is not None or system.joint_embedding is not None


SWEEP = MINIMAL.replace('retriever = "exact"\nfusion_head = { name = "xattn", k = 4 }',
                        'retriever = { name = "usearch-hnsw", expansion_search = [16, 64] }\n'
                        'fusion_head = { name = "xattn", k = [1, 5, 10] }')


def test_a_list_parameter_sweeps_into_one_named_system_per_value(tmp_path):
    suite = load_suite(write(tmp_path, SWEEP))
    names = [n for n in suite.systems if n.startswith("retrieving")]
    assert names == [f"retrieving[expansion_search={e},k={k}]"
                     for e in (16, 64) for k in (1, 5, 10)]
    variant = suite.systems["retrieving[expansion_search=64,k=5]"]
    assert variant.retriever.params == {"expansion_search": 64}
    assert variant.fusion_head.params == {"k": 5}
    assert variant.text_encoder.params == {"pooling": "cls"}  # the rest is the system's
    assert variant.components()["sweep"] == {
        "base": "retrieving", "values": {"retriever.expansion_search": 64, "fusion_head.k": 5}}
    assert "sweep" not in suite.systems["plain"].components()
    # a task naming the swept system runs every variant, in the suite's order
    category, retrieval = suite.tasks
    assert category.systems == ("plain", *names) and retrieval.systems == tuple(names)
    # the same file parses to the same names: a rerun finds its cells
    assert list(load_suite(write(tmp_path, SWEEP)).systems) == list(suite.systems)


def test_a_one_value_list_is_passed_on_not_swept(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL.replace("k = 4", "k = 4, ks = [[1, 5]]")))
    assert suite.systems["retrieving"].fusion_head.params == {"k": 4, "ks": [1, 5]}
    assert suite.systems["retrieving"].sweep is None


def test_a_parameter_swept_in_two_roles_is_named_with_its_role(tmp_path):
    text = MINIMAL.replace('retriever = "exact"',
                           'retriever = "exact"\nretrieval_key = { name = "infonce", k = [1, 2] }')
    suite = load_suite(write(tmp_path, text.replace("k = 4", "k = [4, 8]")))
    assert "retrieving[fusion_head.k=4,retrieval_key.k=2]" in suite.systems


@pytest.mark.parametrize("change, message", [
    (("k = 4", "k = []"), "[systems.retrieving] fusion_head.k: an empty sweep"),
    (("k = 4", "k = [4, 4]"), "[systems.retrieving] fusion_head.k: the sweep repeats a value"),
    (("k = 4", 'k = ["a b", "c"]'), "the sweep variant 'retrieving[k=a b]' is not a usable name"),
    (('baseline = "plain"', 'baseline = "retrieving"'),
     "baseline 'retrieving' is not a system (a sweep: name one of its variants, "
     "e.g. 'retrieving[k=4]')"),
])
def test_sweep_mistakes_name_the_file_and_key(tmp_path, change, message):
    text = MINIMAL.replace("k = 4", "k = [4, 8]") if "baseline" in change[0] else MINIMAL
    path = write(tmp_path, text.replace(*change, 1))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_shard_index_is_the_harness_s_key_of_a_retriever_table(tmp_path):
    from ravlm_bench.config.preflight import _check_system
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry
    from ravlm_bench.stages.components import plugin_params

    registry = Registry(get_plugin_manager())
    sharded = MINIMAL.replace('retriever = "exact"',
                              'retriever = { name = "exact", shard_index = true }')
    [system] = [s for s in load_suite(write(tmp_path, sharded)).systems.values()
                if s.retriever is not None]
    _check_system(system, registry, "suite")  # accepted; the plugin never sees it
    assert system.retriever.as_dict() == {"name": "exact", "shard_index": True}  # identity
    assert plugin_params("retrievers", system.retriever.params) == {}
    [bad] = [s for s in load_suite(write(tmp_path, sharded.replace(
        "shard_index = true", 'shard_index = "yes"'))).systems.values() if s.retriever]
    with pytest.raises(ConfigError, match="retriever: shard_index must be true or false"):
        _check_system(bad, registry, "suite")


OPEN = MINIMAL + """
[systems.open]
retriever = { name = "<candidate>", ef = 8 }
fusion_head = { name = "knn", k = 4 }
[tasks.vg-qa]
systems = ["plain", "open"]
"""


def test_an_open_retriever_takes_each_named_retriever_in_turn(tmp_path):
    path = write(tmp_path, OPEN)
    suite = load_suite(path, ["numpy-flat", "exact"])
    names = ["open[retriever=numpy-flat]", "open[retriever=exact]"]
    assert [s.name for s in suite.systems.values()][-2:] == names
    flat = suite.systems["open[retriever=numpy-flat]"]
    assert flat.retriever.as_dict() == {"name": "numpy-flat", "ef": 8}
    assert flat.fusion_head.name == "knn"
    vg = next(t for t in suite.tasks if t.name == "vg-qa")
    assert vg.systems == ("plain", *names)
    # a task without a system list runs every system, the instances included
    category = next(t for t in suite.tasks if t.name == "coco-category")
    assert set(names) <= set(category.systems)
    # the named retrievers are part of the suite's identity
    assert load_suite(path, ["exact"]).sha256 != suite.sha256


def test_an_open_retriever_needs_a_name_and_a_name_needs_an_open_retriever(tmp_path):
    with pytest.raises(ConfigError, match=r"\[systems.open\] leaves its retriever open .*"
                                          r"--retriever NAME"):
        load_suite(write(tmp_path, OPEN))
    with pytest.raises(ConfigError, match="no system of the suite leaves its retriever open"):
        load_suite(write(tmp_path, MINIMAL), ["numpy-flat"])
    with pytest.raises(ConfigError, match="a name must be one path component"):
        load_suite(write(tmp_path, OPEN), ["a/b"])


def test_the_retriever_benchmark_without_a_retriever_stops_with_one_line(tmp_path):
    result = run_cli("run", "retrievers", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "retrievers.toml: [systems.reader-candidate] leaves its " \
        "retriever open" in lines[0] and "--retriever NAME" in lines[0]
    assert not (tmp_path / "run").exists()
    unknown = run_cli("run", "retrievers", "--retriever", "no-such-index",
                      "--out", str(tmp_path / "run"))
    assert unknown.returncode == 2 and "no-such-index" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
