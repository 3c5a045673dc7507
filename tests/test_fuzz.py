"""Malformed inputs end in a result or one clean line, never a traceback or a hang.

Each target takes a small valid input (a few records of the demo world's COCO, Karpathy,
Flickr30k and Visual Genome annotations, the demo suite, a cell record with its arrays),
damages it with :func:`mutate_json` / :func:`mutate_bytes` (wrong types, missing keys,
deep nesting, huge and fractional numbers, duplicates, odd unicode, truncation, flipped
bytes) and calls the library function the CLI calls. :func:`outcome` says whether that
ended in a result or in one ``RavlmError`` line with exit code 2; anything else fails.
The mutators take a ``random.Random``: Hypothesis drives them here (and shrinks what it
finds), ``benchmarks/fuzz_campaign.py`` drives them for its long campaign. Knowledge bases
are datasets' splits (no corpus loader of their own), so the loaders cover them.
"""

from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import tomllib

from ravlm_bench.foundation.errors import RavlmError

MAX_MESSAGE = 2000  # characters of a clean error line
ODD_VALUES = [None, True, 0, -1, 1.5, 10**30, -(10**30), float("inf"), "", "abc", "1",
              "\u2028\x00\ud800é😀", [], {}, [1, "x"], {"id": 1}]


# ---------------------------------------------------------------------------------------
# Mutators
# ---------------------------------------------------------------------------------------


def _containers(value, path=()):
    yield path, value
    if len(path) > 12:  # inside a nesting an earlier mutation made: deep enough
        return
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, (dict, list)):
                yield from _containers(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value[:8]):
            if isinstance(child, (dict, list)):
                yield from _containers(child, (*path, i))


def _mutate_once(rng: random.Random, doc) -> object:
    places = list(_containers(doc))
    _, node = rng.choice(places)
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    op = rng.randrange(7)
    if not keys or op == 0:  # the whole document replaced or wrapped
        # a copy: a later mutation must not nest into the shared ODD_VALUES themselves
        nested = copy.deepcopy(rng.choice(ODD_VALUES))
        for _ in range(rng.choice([1, 50, 3000])):
            nested = [nested]
        return nested if not keys else (doc if rng.random() < 0.5 else [doc])
    key = rng.choice(keys)
    if op == 1:
        node[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif op == 2:
        del node[key]
    elif op == 3 and isinstance(node, list):
        node.insert(rng.randrange(len(node) + 1), node[key])  # a duplicate (shared)
    elif op == 4:
        nested = node[key]
        for _ in range(rng.choice([2, 100, 5000])):
            nested = [nested] if rng.random() < 0.5 else {"x": nested}
        node[key] = nested
    elif op == 5 and isinstance(node[key], (int, float)) and not isinstance(node[key], bool):
        node[key] = rng.choice([node[key] + 0.5, -node[key], node[key] * 10**25, str(node[key])])
    elif op == 5 and isinstance(node[key], str):
        node[key] = rng.choice([node[key] * 1000, node[key][::-1], "\ud800", "\x00", "🙂"])
    elif isinstance(node, dict):
        node[rng.choice(["id", "image_id", "images", "x", ""])] = node.pop(key)  # renamed
    return doc


def mutate_json(rng: random.Random, doc) -> bytes:
    """``doc`` (not changed) damaged one to three times, as the bytes of a JSON file, which
    are then sometimes truncated or have a byte flipped."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        doc = _mutate_once(rng, doc)
    try:
        data = json.dumps(doc).encode()
    except (RecursionError, ValueError):
        data = b"[" * 100_000
    return mutate_bytes(rng, data) if rng.random() < 0.15 else data


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, or with a slice doubled."""
    data = bytearray(data)
    op = rng.randrange(3)
    if op == 0 or not data:
        return bytes(data[:rng.randrange(len(data) + 1)])
    if op == 1:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    start = rng.randrange(len(data))
    return bytes(data[:start] + data[start:start + 64] + data[start:])


# ---------------------------------------------------------------------------------------
# Outcome
# ---------------------------------------------------------------------------------------


class UncleanError(AssertionError):
    """A RavlmError whose message is not one bounded line, or whose exit code is not 2."""


def outcome(call) -> str:
    """``"result"`` or ``"clean error"``; anything else propagates (a failure)."""
    try:
        call()
    except RavlmError as exc:
        message = str(exc)
        if exc.exit_code != 2 or "\n" in message or not message or len(message) > MAX_MESSAGE:
            raise UncleanError(f"exit {exc.exit_code}, {len(message)} chars: "
                               f"{message[:300]!r}") from exc
        return "clean error"
    return "result"


# ---------------------------------------------------------------------------------------
# Targets: valid seeds from a tiny demo world, and the call each makes
# ---------------------------------------------------------------------------------------

KEEP = 3  # images per seed file


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _coco_seeds(world: Path) -> dict[str, dict]:
    seeds = {}
    for kind in ("captions", "instances"):
        doc = _read(world / "coco" / "annotations" / f"{kind}_val2017.json")
        doc["images"] = doc["images"][:KEEP]
        ids = {image["id"] for image in doc["images"]}
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids][:12]
        seeds[f"annotations/{kind}_val2017.json"] = doc
    return seeds


def _karpathy_seed(path: Path) -> dict:
    doc = _read(path)
    doc["images"] = doc["images"][:KEEP]
    return doc


def _vg_seeds(world: Path) -> dict[str, object]:
    images = _read(world / "visual_genome" / "image_data.json")[:KEEP]
    ids = {image.get("image_id", image.get("id")) for image in images}
    seeds = {"image_data.json": images}
    for name in ("question_answers.json", "objects.json", "region_descriptions.json"):
        rows = _read(world / "visual_genome" / name)
        seeds[name] = [r for r in rows if r.get("id", r.get("image_id")) in ids][:KEEP]
    return seeds


class Target:
    """A loader, parser or reader with its valid seed files; ``run(rng, work)`` damages one
    of them in the directory ``work`` and calls the function, returning its outcome."""

    def __init__(self, name: str, files: dict[str, object], call, text: bool = False):
        self.name, self.files, self.call, self.text = name, files, call, text

    def run(self, rng: random.Random, work: Path) -> str:
        victim = rng.choice(sorted(self.files))
        for name, doc in self.files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.text:
                data = doc.encode() if name != victim else mutate_text(rng, doc)
            else:
                data = json.dumps(doc).encode() if name != victim else mutate_json(rng, doc)
            path.write_bytes(data)
        return outcome(lambda: self.call(work))


def mutate_text(rng: random.Random, text: str) -> bytes:
    """A line-based file with lines dropped, doubled, cut or swapped with odd text."""
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(4)
        if op == 0:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            lines[i] = rng.choice(["\t\n", "#\n", "x.jpg#99999999999999999999\tcap\n",
                                   "\u2028\n", "a|b|c\n", "\x00\n", "🙂.jpg#0\t🙂\n"])
        else:
            lines[i] = lines[i].replace("\t", rng.choice(["", "\t\t", " "]))
    data = "".join(lines).encode("utf-8", "surrogatepass")
    return mutate_bytes(rng, data) if rng.random() < 0.2 else data


def _dataset(module: str, **options):
    import importlib

    create = importlib.import_module(f"ravlm_plugins.datasets.{module}").create
    return lambda root: create(root, check_images=False, **options)


class SuiteTarget(Target):
    """The suite parser: the parsed demo suite damaged as a table (most inputs, to get past
    the TOML reader) or the TOML text damaged as bytes."""

    def __init__(self, toml_text: str):
        super().__init__("suite file", {}, None)
        self.toml_text, self.table = toml_text, tomllib.loads(toml_text)

    def run(self, rng: random.Random, work: Path) -> str:
        from ravlm_bench.config.suite import load_suite, parse_suite

        path = work / "suite.toml"
        if rng.random() < 0.8:
            table = copy.deepcopy(self.table)
            for _ in range(rng.randint(1, 3)):
                table = _mutate_once(rng, table)
            if not isinstance(table, dict):  # the TOML reader always gives a table
                table = {"name": table}
            return outcome(lambda: parse_suite(table, path, ""))
        work.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mutate_bytes(rng, self.toml_text.encode()))
        return outcome(lambda: load_suite(path))


def _cell_record_and_arrays() -> tuple[dict, bytes]:
    from ravlm_bench.store.cell_files import RECORD_CHECKSUM, arrays_checksum, record_checksum

    buffer = io.BytesIO()
    np.savez_compressed(buffer, y_true=np.arange(6), scores=np.eye(6, dtype=np.float32),
                        names=np.array(["a", "b"]))
    data = buffer.getvalue()
    record = {"task": "t", "system": "s", "seed": 0, "status": "ok", "error": None,
              "metrics": {"accuracy": 0.5, "ci95": {}}, "cost": {"index_mb": 1.0},
              "arrays_sha256": arrays_checksum(data)}
    record[RECORD_CHECKSUM] = record_checksum(record)
    return record, data


class CellTarget(Target):
    """The cell reader: a record (damaged, its checksum sometimes made to match again) and
    its arrays (damaged, the record's arrays checksum made to match so numpy reads them)."""

    def __init__(self):
        super().__init__("cell file", {}, None)
        self.record, self.arrays = _cell_record_and_arrays()

    def run(self, rng: random.Random, work: Path) -> str:
        from ravlm_bench.store.cell_files import (
            RECORD_CHECKSUM,
            arrays_checksum,
            read_arrays,
            read_cell,
            record_checksum,
        )

        work.mkdir(parents=True, exist_ok=True)
        cell = work / "cell.json"
        record = copy.deepcopy(self.record)
        arrays = self.arrays
        if rng.random() < 0.5:
            arrays = mutate_bytes(rng, arrays)
            record["arrays_sha256"] = arrays_checksum(arrays)
            record[RECORD_CHECKSUM] = record_checksum(record)
            data = json.dumps(record).encode()
        else:
            data = mutate_json(rng, record)
            if rng.random() < 0.5:
                try:
                    damaged = json.loads(data)
                    if isinstance(damaged, dict):
                        damaged[RECORD_CHECKSUM] = record_checksum(damaged)
                        data = json.dumps(damaged).encode()
                except (ValueError, TypeError, RecursionError):
                    pass
        cell.write_bytes(data)
        cell.with_suffix(".npz").write_bytes(arrays)

        def read():
            found, problem = read_cell(cell)
            if found is not None:
                read_arrays(cell, found.get("arrays_sha256"))

        return outcome(read)


def build_targets(world: Path) -> list[Target]:
    """Every target, seeded from the demo world at ``world`` (generated ``size="tiny"``)."""
    from ravlm_bench.config.suite import builtin_suite

    flickr = world / "flickr30k"
    tokens = "".join((flickr / "results_20130124.token").read_text(encoding="utf-8")
                     .splitlines(keepends=True)[:5 * KEEP])
    return [
        Target("coco official", _coco_seeds(world), _dataset("coco", split_scheme="official")),
        Target("coco karpathy", {"dataset_coco.json": _karpathy_seed(world / "coco" /
                                                                     "dataset_coco.json")},
               _dataset("coco", split_scheme="karpathy")),
        Target("flickr30k karpathy",
               {"dataset_flickr30k.json": _karpathy_seed(flickr / "dataset_flickr30k.json")},
               _dataset("flickr30k")),
        Target("flickr30k token", {"results_20130124.token": tokens}, _dataset("flickr30k"),
               text=True),
        Target("visual genome", _vg_seeds(world), _dataset("visual_genome")),
        SuiteTarget(builtin_suite("demo").read_text(encoding="utf-8")),
        CellTarget(),
    ]


# ---------------------------------------------------------------------------------------
# The default run: a few hundred Hypothesis examples; the slow campaign: many more
# ---------------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TARGET_NAMES = ["coco official", "coco karpathy", "flickr30k karpathy", "flickr30k token",
                "visual genome", "suite file", "cell file"]


@pytest.fixture(scope="module")
def targets(tmp_path_factory, monkeypatch_module):
    from ravlm_bench.demo import generate_demo_world

    world = tmp_path_factory.mktemp("fuzz") / "world"
    generate_demo_world(world, seed=0, size="tiny")
    return {target.name: target for target in build_targets(world)}


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("RAVLM_BENCH_CACHE", str(tmp_path_factory.mktemp("fuzz-cache")))
        yield monkeypatch


def _fuzz(target: Target, work_root: Path, examples: int):
    counter = iter(range(10**9))

    @settings(max_examples=examples, deadline=5000, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def check(rng):
        assert target.run(rng, work_root / str(next(counter))) in ("result", "clean error")

    check()


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_malformed_inputs_end_in_a_result_or_one_clean_line(targets, tmp_path, name):
    _fuzz(targets[name], tmp_path, 120 if name in ("suite file", "cell file") else 30)


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_fuzz_campaign_finds_no_failure(targets, tmp_path, name):
    _fuzz(targets[name], tmp_path, 2000)


def test_the_mutators_damage_and_are_deterministic():
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}
    outputs = [mutate_json(random.Random(seed), doc) for seed in range(40)]
    assert outputs == [mutate_json(random.Random(seed), doc) for seed in range(40)]
    assert len(set(outputs)) > 20 and json.dumps(doc).encode() not in outputs[:3]
    assert doc == {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}


def test_the_mutators_leave_their_odd_values_alone():
    # mutations once nested into a shared ODD_VALUES list, so later inputs (of any target)
    # carried a 5,000-level value and copy.deepcopy overflowed in the harness itself
    before = copy.deepcopy(ODD_VALUES)
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}
    for seed in range(400):
        mutate_json(random.Random(seed), doc)
    assert ODD_VALUES == before


# ---------------------------------------------------------------------------------------
# What the campaign found, pinned: each input once ended in another exception or a long line
# ---------------------------------------------------------------------------------------


def _demo_table() -> dict:
    from ravlm_bench.config.suite import builtin_suite

    return tomllib.loads(builtin_suite("demo").read_text(encoding="utf-8"))


def _clean(call) -> str:
    with pytest.raises(RavlmError) as info:
        call()
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message and len(message) < 400, message
    return message


def test_a_deeply_nested_suite_value_is_refused_naming_its_key(tmp_path):
    from ravlm_bench.config.suite import load_suite, parse_suite

    table = _demo_table()
    system = next(iter(table["systems"]))
    nested: object = 1
    for _ in range(5000):
        nested = [nested]
    table["systems"][system]["fusion_head"] = {"name": "knn", "k": nested}
    message = _clean(lambda: parse_suite(table, tmp_path / "s.toml"))
    assert f"systems.{system}.fusion_head.k" in message and "32 levels" in message
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert "nested too deeply" in _clean(lambda: load_suite(path))
    path.write_text("x = " + "1" * 5000 + "\n", encoding="utf-8")
    assert "not valid TOML" in _clean(lambda: load_suite(path))


def test_a_long_suite_value_is_clipped_in_the_message(tmp_path):
    from ravlm_bench.config.suite import parse_suite

    table = _demo_table()
    table["run"] = {"demo_size": "small" * 1000}
    message = _clean(lambda: parse_suite(table, tmp_path / "s.toml"))
    assert "demo_size" in message and "..." in message
    table["run"] = {"x" * 5000: 1}
    _clean(lambda: parse_suite(table, tmp_path / "s.toml"))


@pytest.mark.parametrize("field, value", [(8, 0x1), (10, 99)], ids=["encrypted", "method"])
def test_a_damaged_zip_header_is_an_unreadable_cell(tmp_path, field, value):
    # a central-directory entry that claims an encrypted member (flag bit 0) or an unknown
    # compression method: zipfile raises RuntimeError / NotImplementedError
    from ravlm_bench.store.cell_files import CellArraysError, read_arrays

    _, data = _cell_record_and_arrays()
    data = bytearray(data)
    start = data.index(b"PK\x01\x02")
    data[start + field:start + field + 2] = value.to_bytes(2, "little")
    (tmp_path / "cell.npz").write_bytes(bytes(data))
    with pytest.raises(CellArraysError, match="unreadable"):
        read_arrays(tmp_path / "cell.json", None)


def test_a_long_library_message_is_clipped_in_an_unreadable_cell(tmp_path):
    from ravlm_bench.store.cell_files import CellArraysError, read_arrays

    _, data = _cell_record_and_arrays()
    data = bytearray(data)
    start = data.index(b"PK\x01\x02")
    name_length = int.from_bytes(data[start + 28:start + 30], "little")
    data[start + 28:start + 30] = (name_length + 1500).to_bytes(2, "little")
    (tmp_path / "cell.npz").write_bytes(bytes(data))
    with pytest.raises(CellArraysError) as info:
        read_arrays(tmp_path / "cell.json", None)
    assert len(str(info.value)) < len(str(tmp_path)) + 300  # unclipped: + 440
