"""Suite fuzzing: suites mutated from the valid FUZZ_SUITE (dropped or renamed keys, wrong
types, bad values, negative k, bool seeds, empty lists, unknown components and keys, unsafe
names, broken TOML), after the SUITE_CORPUS of mutations once found BAD."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import numpy as np

from .fuzzing import (
    FUZZ_SUITE,
    KeyPath,
    del_in,
    dotted,
    fuzz_case,
    fuzz_data,
    get_in,
    leaf_paths,
    rename_in,
    sane_results,
    set_in,
)
from .lab import Case, Lab, past, pick, reset_work
from .toml_text import to_toml, toml_loads

WRONG_TYPED = ("text", 7, -1, 2.5, True, [], ["x"], {}, {"name": 3}, dt.date(2020, 1, 1),
               float("nan"))
UNSAFE_NAMES = ("../x", "a/b", "", ".", "..", "x/../y", "a\\b", " x", "x ", "-x", ".x",
                "a" * 300, "\u00e9t\u00e9", "a\nb", "a\u0000b", "con", "x:y", "*")
# no huge positive ints here: epochs or widths that large are valid and would run for days
# or exhaust memory (seeds and k get theirs in their own mutations)
BAD_INTS = (-1, 0, -7, -(2 ** 63))
BAD_FLOATS = (-1.0, 0.0, float("nan"), float("inf"), float("-inf"), 1e300)
BAD_STRINGS = ("", " ", "nope", "../x", "a/b", "\u00e9")


def typo(name: str, rng: np.random.Generator) -> str:
    variants = [name + "s", name.upper(), name.replace("_", "-").replace("-", "_") + "_",
                name[:-1] if len(name) > 1 else name + name, name[::-1]]
    return pick(rng, [v for v in variants if v != name] or [name + "x"])


def _mutate_drop(doc, rng):
    path = pick(rng, leaf_paths(doc))
    del_in(doc, path)
    return f"drop {dotted(path)}", [str(p) for p in path]


def _mutate_rename(doc, rng):
    path = pick(rng, [p for p in leaf_paths(doc) if isinstance(p[-1], str)])
    new = typo(path[-1], rng)
    rename_in(doc, path, new)
    return f"rename {dotted(path)} to {new!r}", [path[-1], new]


def _mutate_retype(doc, rng):
    path = pick(rng, leaf_paths(doc))
    old = get_in(doc, path)
    value = pick(rng, [v for v in WRONG_TYPED if type(v) is not type(old)])
    set_in(doc, path, value)
    return f"set {dotted(path)} to {value!r}", [str(p) for p in path]


def _mutate_bad_value(doc, rng):
    paths = [p for p in leaf_paths(doc) if isinstance(get_in(doc, p), (int, float, str))]
    path = pick(rng, paths)
    old = get_in(doc, path)
    pool = BAD_STRINGS if isinstance(old, str) else (
        (not old,) if isinstance(old, bool) else BAD_INTS if isinstance(old, int)
        else BAD_FLOATS)
    value = pick(rng, pool)
    set_in(doc, path, value)
    return f"set {dotted(path)} to {value!r}", [str(p) for p in path]


def _mutate_seeds(doc, rng):
    value = pick(rng, ([True], [True, False], [0, False], [-1], [2 ** 63 - 1], [0, 0], [1.5],
                       ["0"], [0, [1]], 0))
    doc["seeds"] = value
    return f"set seeds to {value!r}", ["seeds"]


def _mutate_empty(doc, rng):
    path = pick(rng, [p for p in leaf_paths(doc) if isinstance(get_in(doc, p), (list, dict))])
    empty = [] if isinstance(get_in(doc, path), list) else {}
    set_in(doc, path, empty)
    return f"empty {dotted(path)}", [str(p) for p in path]


def _mutate_unknown_component(doc, rng):
    names = [p for p in leaf_paths(doc) if p[-1] == "name" or p[-1] == "retriever"]
    choice = int(rng.integers(len(names) + 2))
    if choice < len(names):
        path = names[choice]
        set_in(doc, path, "no-such-component")
        return f"set {dotted(path)} to 'no-such-component'", ["no-such-component"]
    table = "tasks" if choice == len(names) else "data"
    old = next(iter(doc[table]))
    rename_in(doc, (table, old), f"no-such-{table}")
    return f"rename [{table}.{old}] to no-such-{table}", [f"no-such-{table}"]


def _mutate_unsafe_name(doc, rng):
    name = pick(rng, UNSAFE_NAMES)
    where = pick(rng, ("name", "systems", "tasks"))
    if where == "name":
        doc["name"] = name
        return f"set name to {name!r}", ["name"]
    old = pick(rng, list(doc[where]))
    (rename_system if where == "systems" else rename_in)(doc, (where, old), name)
    return f"rename [{where}.{old}] to {name!r}", [name, where]


def rename_system(doc: dict, path: KeyPath, new: str) -> None:
    """Rename a system and every reference to it, so only the name itself can be wrong."""
    old = path[-1]
    rename_in(doc, path, new)
    for task in doc.get("tasks", {}).values():
        if isinstance(task, dict) and isinstance(task.get("systems"), list):
            task["systems"] = [new if s == old else s for s in task["systems"]]
    if doc.get("baseline") == old:
        doc["baseline"] = new


def _mutate_k(doc, rng):
    value = pick(rng, (-3, 0, -1, 10 ** 6, 1.5, "5"))
    doc["systems"]["knn-exact"]["fusion_head"]["k"] = value
    return f"set systems.knn-exact.fusion_head.k to {value!r}", ["k"]


def _mutate_unknown_key(doc, rng):
    where = pick(rng, ((), ("run",), ("data", "coco"), ("systems", "knn-exact"),
                       ("systems", "concat", "fusion_head"), ("tasks", "coco-category"),
                       ("defaults", "image_encoder")))
    key = pick(rng, ("nmae", "retreiver", "kk", "demo_sise", "rooot", "sytems", "epoch"))
    get_in(doc, where)[key] = 1
    return f"add {dotted((*where, key))} = 1", [key]


SUITE_MUTATIONS: dict[str, Callable] = {
    "drop-key": _mutate_drop, "rename-key": _mutate_rename, "wrong-type": _mutate_retype,
    "bad-value": _mutate_bad_value, "seeds": _mutate_seeds, "empty": _mutate_empty,
    "unknown-component": _mutate_unknown_component, "unsafe-name": _mutate_unsafe_name,
    "k": _mutate_k, "unknown-key": _mutate_unknown_key,
}
TEXT_MUTATIONS = ("truncate-toml", "garbage-line", "duplicate-table")


# Mutations of FUZZ_SUITE that broke the contract when found, replayed before the random
# ones so that a fix is checked every time: (mutation, operation, key path, value).
SUITE_CORPUS = (
    ("wrong-type", "set", ("tasks", "coco-category", "systems", 1), {}),
    ("unsafe-name", "rename-system", ("systems", "concat"), "a" * 300),
    ("bad-value", "set", ("data", "coco", "root"), ""),
    ("bad-value", "set", ("run", "data_seed"), -7),
    ("drop-key", "drop", ("systems", "knn-exact", "retriever"), None),
    ("bad-value", "set", ("systems", "concat", "fusion_head", "hidden"), 2 ** 63 - 1),
)



def mutate_suite(base: str, rng: np.random.Generator) -> tuple[str, str, str, list[str]]:
    """(mutation, description, suite text, names an error may give) from the valid ``base``."""
    kinds = [*SUITE_MUTATIONS, *TEXT_MUTATIONS]
    kind = pick(rng, kinds)
    if kind in TEXT_MUTATIONS:
        return (kind, *mutate_toml_text(base, kind, rng))
    doc = toml_loads(base)
    description, names = SUITE_MUTATIONS[kind](doc, rng)
    return kind, description, to_toml(doc), names


def corpus_suite(base: str, entry: tuple) -> tuple[str, str, str, list[str]]:
    """:func:`mutate_suite`'s answer for one SUITE_CORPUS entry."""
    kind, operation, path, value = entry
    doc = toml_loads(base)
    if operation == "drop":
        del_in(doc, path)
        description = f"drop {dotted(path)}"
    elif operation == "rename-system":
        rename_system(doc, path, value)
        description = f"rename [{dotted(path)}] to {value!r}"
    else:
        set_in(doc, path, value)
        description = f"set {dotted(path)} to {value!r}"
    return kind, f"{description} (corpus)", to_toml(doc), [str(p) for p in path]


def mutate_toml_text(text: str, kind: str, rng: np.random.Generator):
    if kind == "truncate-toml":
        cut = int(rng.integers(1, len(text)))
        return f"truncate the suite at character {cut}", text[:cut], []
    lines = text.splitlines()
    if kind == "garbage-line":
        at = int(rng.integers(len(lines) + 1))
        garbage = pick(rng, ("= =", "[", "key = ", "x = [1,", "[systems.]", "a.b.c = {"))
        lines.insert(at, garbage)
        return f"insert line {at + 1}: {garbage!r}", "\n".join(lines) + "\n", []
    header = pick(rng, [line for line in lines if line.startswith("[")])
    return f"repeat the table {header}", text + f"\n{header}\n", []



def run_suite_fuzz(lab: Lab, count: int | None = None,
                   deadline: float | None = None) -> list[Case]:
    """The SUITE_CORPUS cases, then ``count`` random mutations (or until ``deadline``)."""
    coco = fuzz_data(lab)
    base = FUZZ_SUITE.format(coco=coco)
    _warm_fuzz_cache(lab, base)
    setup = [f"1. the base fuzz suite (FUZZ_SUITE) over a copy of the demo world's COCO tree "
             f"at {coco}"]
    done: list[Case] = []
    for entry in SUITE_CORPUS:
        started = time.monotonic()
        done.append(fuzz_case(lab, "fuzz-suite", *corpus_suite(base, entry), setup, started))
    random: list[Case] = []
    while (count is None or len(random) < count) and not past(deadline, minimum=not random):
        started = time.monotonic()
        random.append(fuzz_case(lab, "fuzz-suite", *mutate_suite(base, lab.rng), setup,
                                started))
    return done + random


def _warm_fuzz_cache(lab: Lab, base: str) -> None:
    """One run of the valid base suite: later fuzz runs find its features cached, and a
    base that fails would make every case meaningless."""
    if (lab.work / ".fuzz-warm").exists():
        return
    reset_work(lab, "fresh-run")
    suite = lab.work / "suite.toml"
    suite.write_text(base)
    first = lab.run_suite(suite, lab.work / "run")
    problem = sane_results(lab.work / "run") if first.rc == 0 else first.stderr
    if problem:
        raise RuntimeError(f"the fuzz base suite does not run: {problem}")
    (lab.work / ".fuzz-warm").write_text("")
