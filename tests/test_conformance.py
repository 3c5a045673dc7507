"""The conformance kit run over every reference plugin, the kit catching broken objects, and
the rules every reference plugin follows: typed options, imports from ``ravlm_bench.api``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
from pathlib import Path

import pytest
from test_image_encoders import save_tiny_resnet
from test_leaderboard import build_run
from test_text_encoders import save_tiny_bert
from testhelpers import load_builtin_suite

from ravlm_bench.api import (
    check_dataset,
    check_image_encoder,
    check_publisher,
    check_text_encoder,
)
from ravlm_bench.config.suite import BUILTIN_SUITES
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import KINDS, Registry
from ravlm_bench.publish.leaderboard import load_run

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
REFERENCE_DISTRIBUTION = "ravlm-bench"
IMAGE_ENCODERS = ("resnet18", "resnet50")
# registered whether or not their weight packages are installed; test_efficientnet runs the kit
EFFICIENTNETS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
TEXT_ENCODERS = ("bert", "bert-base-uncased", "minilm-l6")
DATASETS = ("aokvqa", "coco", "flickr30k", "infoseek", "okvqa", "passages", "visual_genome")
PUBLISHERS = ("csv", "dependence", "explorer", "fronts", "html", "json", "latex", "markdown",
              "png")
# suite role -> component kind
ROLE_KINDS = {"image_encoder": "image-encoders", "text_encoder": "text-encoders",
              "retriever": "retrievers", "fusion_head": "fusion-heads",
              "joint_embedding": "joint-embeddings"}


@pytest.fixture(scope="module")
def registry():
    registry = Registry(get_plugin_manager())
    assert not registry.pm.broken, [b.message() for b in registry.pm.broken.values()]
    return registry


def reference_entries(registry: Registry, kind: str) -> list:
    """The entries of ``kind`` that the plugins shipped with ravlm-bench register."""
    sources = registry.pm.sources
    return [entry for entry in registry.entries(kind)
            if getattr(sources.get(entry.plugin), "distribution", None)
            == REFERENCE_DISTRIBUTION]


def test_the_lists_here_name_every_reference_component(registry):
    for kind, names in (("image-encoders", IMAGE_ENCODERS + EFFICIENTNETS),
                        ("text-encoders", TEXT_ENCODERS),
                        ("datasets", DATASETS), ("publishers", PUBLISHERS)):
        assert sorted(e.name for e in reference_entries(registry, kind)) == sorted(names), kind


# ---------------------------------------------------------------------------------------
# The reference plugins pass the kit
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("tiny-resnet")
    save_tiny_resnet(directory)
    return str(directory)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_bert(directory)
    return str(directory)


@pytest.mark.parametrize("name", IMAGE_ENCODERS)
def test_image_encoders_pass_the_kit(registry, tiny_resnet, name):
    encoder = registry.create("image-encoders", name, weights=tiny_resnet, image_size=32,
                              precision="fp32")
    check_image_encoder(encoder)


@pytest.mark.parametrize("name", TEXT_ENCODERS)
def test_text_encoders_pass_the_kit(registry, tiny_bert, name):
    check_text_encoder(registry.create("text-encoders", name, weights=tiny_bert))


@pytest.mark.parametrize("name, params", [
    ("coco", {}), ("coco", {"split_scheme": "official"}), ("flickr30k", {}),
    ("visual_genome", {"split_seed": 3}), ("okvqa", {}), ("aokvqa", {}), ("infoseek", {}),
    ("passages", {}),
], ids=["coco-karpathy", "coco-official", "flickr30k", "visual_genome", "okvqa", "aokvqa",
        "infoseek", "passages"])
def test_datasets_pass_the_kit(registry, demo_world, name, params):
    check_dataset(registry.create("datasets", name, root=str(demo_world / name), **params))


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    run_dir = build_run(tmp_path_factory.mktemp("conformance-run"), failed={
        ("shape-category", "knn", 1): ("retrievers", "search returned NaN scores")})
    return load_run(run_dir)


@pytest.mark.parametrize("name", PUBLISHERS)
def test_publishers_pass_the_kit(registry, board, tmp_path, name):
    check_publisher(registry.create("publishers", name), board, tmp_path / "not-yet-there")


# ---------------------------------------------------------------------------------------
# The kit fails broken objects
# ---------------------------------------------------------------------------------------


class Altered:
    """A loaded dataset with some attributes replaced: ``Altered(dataset, kinds=(...))``."""

    def __init__(self, dataset, **replaced):
        self._dataset = dataset
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(self._dataset, name)


def _replace_table(dataset, kind: str, change):
    """``table`` with ``change(table, split)`` applied to the tables of ``kind``."""
    def table(asked_kind, split):
        found = dataset.table(asked_kind, split)
        return change(found, split) if asked_kind == kind else found

    return table


def _relative_image_paths(table, split):
    names = [os.path.basename(p) for p in table["image_path"]]
    return table.remove_columns("image_path").add_column("image_path", names)


def _no_absent_split_error(dataset):
    def table(kind, split):
        if split not in dataset.splits():
            raise KeyError(split)
        return dataset.table(kind, split)

    return table


BROKEN_DATASETS = {
    "unknown kind": (lambda d: {"kinds": (*d.kinds, "pixels")},
                     r"kinds \['pixels'\] are not record kinds of RECORD_SCHEMAS"),
    "no splits": (lambda d: {"splits": lambda: []},
                  r"splits\(\) must return a non-empty list"),
    "missing column": (lambda d: {"table": _replace_table(
        d, "captions", lambda t, s: t.remove_columns("caption"))},
        r"table\('captions', 'train'\): lacks the columns \['caption'\]"),
    "relative image paths": (lambda d: {"table": _replace_table(
        d, "images", _relative_image_paths)},
        r"table\('images', 'train'\): \d+ image_path values are not absolute paths"),
    "rows of another split": (lambda d: {"table": _replace_table(
        d, "captions", lambda t, s: d.table("captions", "train"))},
        r"table\('captions', 'restval'\): holds rows whose split column says \['train'\]"),
    "empty table for a split": (lambda d: {"table": _replace_table(
        d, "instances", lambda t, s: t.select([]) if s == "val" else t)},
        r"table\('instances', 'val'\) returned an empty table; an empty split must raise "
        r"DataError"),
    "KeyError for an absent split": (lambda d: {"table": _no_absent_split_error(d)},
                                     r"raised KeyError; a split the dataset does not have "
                                     r"must raise DataError"),
    "unstable fingerprint": (lambda d: {"fingerprint": iter(["a", "b"]).__next__},
                             r"fingerprint\(\) must return the same non-empty string"),
    "root is a string": (lambda d: {"root": str(d.root)},
                         r"root must be the pathlib.Path of an existing directory"),
}


@pytest.mark.parametrize("broken", BROKEN_DATASETS)
def test_check_dataset_fails_a_broken_dataset(registry, demo_world, broken):
    coco = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    replace, message = BROKEN_DATASETS[broken]
    with pytest.raises(AssertionError, match=message):
        check_dataset(Altered(coco, **replace(coco)))


class FakePublisher:
    def __init__(self, write):
        self.write = write

    def publish(self, board, out_dir: Path) -> list:
        out_dir.mkdir(parents=True, exist_ok=True)
        return self.write(out_dir)


def _written(path: Path, text: str = "a table\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BROKEN_PUBLISHERS = {
    "nothing written": (lambda out: [], r"must return a non-empty list of the paths"),
    "a str, not a Path": (lambda out: [str(_written(out / "board.txt"))], r"expected a Path"),
    "outside out_dir": (lambda out: [_written(out.parent / "elsewhere" / "board.txt")],
                        r"which is not under out_dir"),
    "a file never written": (lambda out: [out / "board.txt"], r"which is not a file"),
    "an empty file": (lambda out: [_written(out / "board.txt", "")],
                      r"publish\(\) wrote an empty file"),
}


@pytest.mark.parametrize("broken", BROKEN_PUBLISHERS)
def test_check_publisher_fails_a_broken_publisher(board, tmp_path, broken):
    write, message = BROKEN_PUBLISHERS[broken]
    with pytest.raises(AssertionError, match=message):
        check_publisher(FakePublisher(write), board, tmp_path / "out")


# ---------------------------------------------------------------------------------------
# Typed options
# ---------------------------------------------------------------------------------------


def test_every_reference_component_declares_its_options(registry):
    undeclared = {kind: [e.name for e in reference_entries(registry, kind)
                         if not e.params.declared] for kind in KINDS}
    assert any(reference_entries(registry, kind) for kind in KINDS)
    missing = {kind: names for kind, names in undeclared.items() if names}
    assert not missing, ("registered without options= (a dataclass of option() fields): "
                         + "; ".join(f"{kind}: {', '.join(names)}"
                                     for kind, names in missing.items()))


def _keyword_defaults(factory, leave_out: tuple[str, ...] = ()) -> dict:
    parameters = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in leave_out}


def _declared_defaults(options, leave_out: tuple[str, ...] = ()) -> dict:
    return {f.name: f.default for f in dataclasses.fields(options) if f.name not in leave_out}


def _options_and_factories():
    from ravlm_plugins.datasets import _options, coco, flickr30k, visual_genome
    from ravlm_plugins.image_encoders import ResNetImageEncoder, ResNetOptions
    from ravlm_plugins.text_encoders import BertOptions, BertTextEncoder

    # (options, factory, what only the factory takes, what only the options declare)
    return {
        "coco": (_options.CocoOptions, coco.create, (), ()),
        "flickr30k": (_options.Flickr30kOptions, flickr30k.create, (), ()),
        "visual_genome": (_options.VisualGenomeOptions, visual_genome.create, (), ()),
        "resnet": (ResNetOptions, ResNetImageEncoder, ("arch",), ()),
        # the bert factory turns weights into the directory it passes on
        "bert": (BertOptions, BertTextEncoder, ("name", "directory"), ("weights",)),
    }


@pytest.mark.parametrize("component", ["coco", "flickr30k", "visual_genome", "resnet", "bert"])
def test_declared_options_are_the_factory_parameters_with_their_defaults(component):
    options, factory, factory_only, options_only = _options_and_factories()[component]
    assert (_declared_defaults(options, leave_out=options_only)
            == _keyword_defaults(factory, leave_out=factory_only))


@pytest.mark.parametrize("path", sorted(BUILTIN_SUITES.glob("*.toml")), ids=lambda p: p.stem)
def test_builtin_suites_give_each_component_parameters_it_accepts(registry, path):
    suite = load_builtin_suite(path)
    for name, params in suite.data.items():
        registry.get("datasets", name).check(params, f"{path.name} [data.{name}]")
    for task in suite.tasks:
        registry.get("tasks", task.name).check(task.params, f"{path.name} [tasks.{task.name}]")
    for system in suite.systems.values():
        for role, kind in ROLE_KINDS.items():
            spec = getattr(system, role, None)
            if spec is not None:
                registry.get(kind, spec.name).check(
                    spec.params, f"{path.name} [systems.{system.name}] {role}")


# ---------------------------------------------------------------------------------------
# Plugins import from ravlm_bench.api only
# ---------------------------------------------------------------------------------------


def core_imports(path: Path) -> list[str]:
    """``file:line: module`` for each import of ravlm_bench other than ``ravlm_bench.api``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):  # imports inside functions too
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = ([f"ravlm_bench.{alias.name}" for alias in node.names]
                       if node.module == "ravlm_bench" else [node.module])
        else:
            continue
        found += [(node.lineno, module) for module in modules
                  if module.split(".")[0] == "ravlm_bench" and module != "ravlm_bench.api"]
    return [f"{path}:{line}: {module}" for line, module in sorted(found)]


PLUGIN_FILES = sorted(PLUGINS_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", PLUGIN_FILES,
                         ids=lambda p: str(p.relative_to(PLUGINS_DIR)))
def test_plugins_import_the_core_only_through_the_api(path):
    found = core_imports(path)
    assert not found, ("plugins import ravlm_bench.api only (the public API); the rest is "
                       "internal:\n" + "\n".join(found))


def test_the_import_rule_finds_every_form_of_core_import(tmp_path):
    source = tmp_path / "plugin.py"
    source.write_text("import ravlm_bench.api\n"
                      "from ravlm_bench import api\n"
                      "from ravlm_bench.api import hookimpl\n"
                      "import ravlm_bench.foundation.errors\n"
                      "from ravlm_bench.foundation.paths import data_root\n"
                      "def f():\n"
                      "    from ravlm_bench import publish, api\n"
                      "import ravlm_bench\n")
    assert core_imports(source) == [f"{source}:4: ravlm_bench.foundation.errors",
                                    f"{source}:5: ravlm_bench.foundation.paths",
                                    f"{source}:7: ravlm_bench.publish",
                                    f"{source}:8: ravlm_bench"]
