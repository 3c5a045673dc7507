"""Benchmark suites: a TOML file naming the data, the tasks, the systems, the seeds and the
``[run]`` options, parsed into a :class:`Suite` (``ravlm_bench/suites/demo.toml`` is a
complete example). A list where a component parameter takes one value is a sweep: the
system expands to one named system per value (per combination where several are lists;
``ks = [[1, 5]]`` passes one list), and a task naming it runs every variant. How many
systems and cells a suite expands to is counted from the sweeps' lengths before any
variant is built, and refused over ``[run] max_cells``. A system whose retriever is
``"<candidate>"`` leaves it open (:mod:`ravlm_bench.config.candidates`): the retrievers
named on the command line (``ravlm-bench run SUITE --retriever NAME[,NAME...]``) each take
its place, one system ``NAME-OF-SYSTEM[retriever=NAME]`` per retriever. Every
mistake is a one-line ``ConfigError`` naming the file, the key and the fix (unknown keys
with a did-you-mean), of bounded length however long the lists it could quote.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ravlm_bench.config.candidates import with_candidates
from ravlm_bench.config.knowledge import KnowledgeSpec
from ravlm_bench.foundation.errors import ConfigError, clipped, listing
from ravlm_bench.plugin_host.options import option, parse_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# the retrieval keys that need no training (anything else names a joint embedding)
FIXED_KEYS = ("image", "text", "image+text")

ROLES = ("image_encoder", "text_encoder", "retriever", "fusion_head", "joint_embedding")
# A retriever key the harness reads, not the plugin: under torchrun, split the knowledge-base
# index across the processes (each holds a shard; searches merge the shards' top-k) instead
# of every process holding the whole index. Part of the system's identity.
SHARD_INDEX = "shard_index"
# role -> registry kind
ROLE_KINDS = {"image_encoder": "image-encoders", "text_encoder": "text-encoders",
              "retriever": "retrievers", "fusion_head": "fusion-heads",
              "joint_embedding": "joint-embeddings"}
SYSTEM_KEYS = (*ROLES, "retrieval_key", "knowledge")
# Suite, system and task names become directory names of a run: one safe path component,
# short enough that a cell's file name fits every file system's 255-byte limit.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,@\[\]-]{0,119}$")
TOP_LEVEL_KEYS = ("name", "description", "seeds", "baseline", "metric", "data", "defaults",
                  "systems", "tasks", "run")
BUILTIN_SUITES = Path(__file__).parents[1] / "suites"
# levels of tables and lists a suite may nest (the built-in suites use at most 5): anything
# deeper is refused at load, before repr, deepcopy or json recurse into it
MAX_DEPTH = 32


@dataclass(frozen=True)
class RunOptions:
    """The suite's ``[run]`` table: how the run prepares its data and what it measures."""

    data_seed: int = option(0, "seed of the tasks' data choices (captions picked, splits)",
                            minimum=0)
    demo: bool = option(False, "datasets without a root use the embedded demo world")
    demo_size: Literal["tiny", "small", "medium"] = option("small", "size of the demo world")
    # counted before any sweep is expanded: a sweep of three 1,000-value lists would
    # otherwise build 10^9 systems in memory before anything is printed
    max_cells: int = option(10_000, "most (task, system, seed) cells, and most systems, the "
                                    "suite may expand to", minimum=1)
    retrieval_dependence: bool = option(
        True, "score every retrieving system again with its retrieved items corrupted "
              "(the retrieval dependence)")
    cache_indexes: bool = option(
        False, "keep built indexes on disk (retrievers with build_or_load) and load them on "
               "a rerun")


@dataclass(frozen=True)
class ComponentSpec:
    """A component as a suite names it: a registered name and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


@dataclass(frozen=True)
class SystemSpec:
    """A system: its encoders, and a fusion head (classification-style tasks) and/or a joint
    embedding (retrieval tasks); a retriever where the head retrieves or the task ranks."""

    name: str
    image_encoder: ComponentSpec
    text_encoder: ComponentSpec
    fusion_head: ComponentSpec | None = None
    retriever: ComponentSpec | None = None
    joint_embedding: ComponentSpec | None = None
    # what queries and knowledge-base items are embedded by: "image", "text", "image+text"
    # or a joint embedding trained on the task's training split
    retrieval_key: ComponentSpec = field(default_factory=lambda: ComponentSpec("image+text"))
    # another dataset's split to retrieve from, instead of the task's training split
    knowledge: KnowledgeSpec | None = None
    # a variant of a sweep: the system it was expanded from and its swept values
    sweep: Sweep | None = None

    def components(self) -> dict[str, dict | None]:
        parts = {role: (getattr(self, role).as_dict() if getattr(self, role) else None)
                 for role in ROLES}
        parts.update(retrieval_key=self.retrieval_key.as_dict(),
                     knowledge=self.knowledge.as_dict() if self.knowledge else None)
        if self.sweep is not None:
            parts["sweep"] = self.sweep.as_dict()
        return parts


@dataclass(frozen=True)
class Sweep:
    """Which sweep a system is a variant of: ``base`` is the system as the suite names it,
    ``values`` its swept parameters (``role.parameter``) and their values here."""

    base: str
    values: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"base": self.base, "values": dict(self.values)}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    params: dict[str, Any]
    systems: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    sha256: str
    seeds: tuple[int, ...]
    baseline: str | None
    data: dict[str, dict[str, Any]]
    tasks: tuple[TaskSpec, ...]
    systems: dict[str, SystemSpec]
    metric: str = "cos"
    description: str = ""
    run: RunOptions = field(default_factory=RunOptions)


def builtin_suite(name: str) -> Path:
    path = BUILTIN_SUITES / f"{name}.toml"
    if not path.is_file():
        known = listing(sorted(p.stem for p in BUILTIN_SUITES.glob("*.toml")))
        raise ConfigError(f"no built-in suite {clipped(repr(name))}; built-in suites: {known}")
    return path


def resolve_suite_path(spec: str | None) -> Path:
    """A suite file path, or the name of a built-in suite (``demo``, ``coco``, ...)."""
    if spec is None:
        return builtin_suite("demo")
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such suite file")
        return path
    return builtin_suite(spec)


def load_suite(path: Path, candidates: Sequence[str] = ()) -> Suite:
    """The suite file at ``path``; ``candidates``: the retrievers that take the place of
    each open retriever (:mod:`ravlm_bench.config.candidates`); the suite's identity
    includes them."""
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an over-long integer
        raise ConfigError(f"{path}: not valid TOML: {clipped(exc, 200)}") from None
    except RecursionError:  # tomllib reads nested arrays recursively
        raise ConfigError(f"{path}: not valid TOML: arrays nested too deeply") from None
    identity = raw_bytes + "".join(f"\n--retriever {c}" for c in candidates).encode()
    return parse_suite(raw, path, hashlib.sha256(identity).hexdigest(), candidates)


def parse_suite(raw: dict[str, Any], path: Path, sha256: str = "",
                candidates: Sequence[str] = ()) -> Suite:
    """The suite in ``raw`` (a parsed TOML file at ``path``) with ``candidates`` in place of
    its open retrievers, or a ConfigError for its first mistake."""
    where = str(path)
    _check_depth(raw, where)
    raw = with_candidates(raw, list(candidates), where)
    _check_keys(raw, TOP_LEVEL_KEYS, f"{where}: unknown top-level key")
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers, e.g. [0, 1, 2]")
    repeated = [seed for seed, n in Counter(seeds).items() if n > 1]
    if repeated:
        raise ConfigError(f"{where}: 'seeds' has duplicates: {listing(repeated)}")

    data = _table(raw, "data", where, default={})
    for dataset, params in data.items():
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: [data.{clipped(dataset, 40)}] must be a table, e.g. "
                              f"root = \"/data/x\"")
    run = parse_options(RunOptions, _table(raw, "run", where, default={}), f"{where}: [run]")
    _check_size(raw, len(seeds), run.max_cells, where)  # before any sweep is expanded

    systems, variants = _systems(raw, where)
    tasks = _tasks(_table(raw, "tasks", where), systems, variants, where)

    baseline = raw.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or baseline not in systems):
        swept = f" (a sweep: name one of its variants, e.g. " \
                f"{clipped(repr(variants[baseline][0]))})" \
            if isinstance(baseline, str) and baseline in variants else ""
        raise ConfigError(f"{where}: baseline {clipped(repr(baseline))} is not a "
                          f"system{swept}; defined: {listing(systems)}")
    metric = raw.get("metric", "cos")
    if metric not in ("cos", "ip", "l2sq"):
        raise ConfigError(f"{where}: metric must be 'cos', 'ip' or 'l2sq', got "
                          f"{clipped(repr(metric))}")
    name = str(raw.get("name", path.stem))
    if not SAFE_NAME.match(name) or ".." in name:
        raise ConfigError(f"{where}: name {clipped(repr(name))} must be one path component: "
                          f"letters, digits and _ . + = , @ [ ] -")
    return Suite(
        name=name, path=path, sha256=sha256, seeds=tuple(seeds),
        baseline=baseline, data=data, tasks=tuple(tasks), systems=systems, metric=metric,
        description=str(raw.get("description", "")), run=run,
    )


def _check_depth(raw: dict, where: str) -> None:
    """Refuse a value nested more than :data:`MAX_DEPTH` tables and lists deep, naming its
    key. Walked with a stack, not by recursion, so the check itself cannot overflow."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(raw, (), 1)]
    while stack:
        value, keys, depth = stack.pop()
        if depth > MAX_DEPTH:
            key = clipped(".".join(keys) or "the top-level table", 80)
            raise ConfigError(f"{where}: {key!r} nests tables and lists more than "
                              f"{MAX_DEPTH} levels deep; a suite value needs a few at most")
        children = value.items() if isinstance(value, dict) else \
            ((None, child) for child in value)
        stack.extend((child, keys if key is None else (*keys, str(key)), depth + 1)
                     for key, child in children if isinstance(child, (dict, list)))


def _check_size(raw: dict, n_seeds: int, limit: int, where: str) -> None:
    """Refuse a suite that would expand to more than ``limit`` systems or cells, counted
    from its sweeps' lengths (their product, never built) and its tasks' system lists
    (cells = the sum over tasks of systems x seeds), naming the system that adds most."""
    defaults = _table(raw, "defaults", where, default={})
    _check_keys(defaults, SYSTEM_KEYS, f"{where}: [defaults] has unknown key")
    sweeps: dict[str, list[tuple[str, int]]] = {}  # system -> (label, length) per swept axis
    for name, body in _table(raw, "systems", where).items():
        _check_name(name, "systems", where)
        sweeps[name] = _swept_axes(name, _sweep_axes(name, _merged(name, body, defaults,
                                                                   where), where))
    size = {name: math.prod(n for _, n in axes) for name, axes in sweeps.items()}
    runs = Counter({name: 0 for name in size})  # system -> how many tasks run it
    extra = 0  # variants a task names by their full name alone
    for body in _table(raw, "tasks", where).values():
        named = body.get("systems", list(size)) if isinstance(body, dict) else []
        named = list(dict.fromkeys(n for n in named if isinstance(n, str))) \
            if isinstance(named, list) else []
        bases = [n for n in named if n in size]
        runs.update(bases)
        # a variant named beside its own sweep runs once; an unknown name is refused later
        extra += sum(1 for n in named if n not in size and not any(
            n.startswith(f"{base}[") and size[base] > 1 for base in bases))
    cells = (sum(size[name] * runs[name] for name in size) + extra) * n_seeds
    n_systems = sum(size.values())
    if not size or (cells <= limit and n_systems <= limit):
        return  # a suite without systems is refused by name later
    worst = max(size, key=lambda name: (size[name] * max(runs[name], 1), size[name]))
    what = f"would run {cells:,} cells" if cells > limit else f"expands to {n_systems:,} systems"
    cause = (f"[systems.{clipped(worst, 40)}] sweeps {size[worst]:,} variants "
             f"({_axes_text(sweeps[worst])})" if size[worst] > 1 else
             f"{n_systems:,} systems and {n_seeds:,} seeds")
    raise ConfigError(f"{where}: {cause}: the suite {what}, over [run] max_cells = {limit}; "
                      f"sweep fewer values or raise max_cells")


def _systems(raw: dict, where: str) -> tuple[dict[str, SystemSpec], dict[str, list[str]]]:
    """The suite's systems, each merged over [defaults] and sweeps expanded, by name; and
    each [systems.NAME] table's variant names (itself alone when it sweeps nothing)."""
    defaults = _table(raw, "defaults", where, default={})
    _check_keys(defaults, SYSTEM_KEYS, f"{where}: [defaults] has unknown key")
    systems_raw = _table(raw, "systems", where)
    if not systems_raw:
        raise ConfigError(f"{where}: no systems; add at least one [systems.NAME] table")
    for name in systems_raw:
        _check_name(name, "systems", where)
    systems: dict[str, SystemSpec] = {}
    variants: dict[str, list[str]] = {}
    for name, body in systems_raw.items():
        expanded = [_system(variant, merged, where, sweep)
                    for variant, merged, sweep in _expand_sweep(name, body, defaults, where)]
        variants[name] = [system.name for system in expanded]
        for system in expanded:
            if system.name in systems or (system.name != name and system.name in systems_raw):
                raise ConfigError(f"{where}: [systems.{name}]: the sweep variant "
                                  f"{clipped(repr(system.name))} is also the name of "
                                  f"another system")
            systems[system.name] = system
    return systems, variants


def _tasks(tasks_raw: dict, systems: dict[str, SystemSpec], variants: dict[str, list[str]],
           where: str) -> list[TaskSpec]:
    """The suite's tasks, each with the systems it runs (a swept system as every variant)."""
    if not tasks_raw:
        raise ConfigError(f"{where}: no tasks; add at least one [tasks.NAME] table")
    tasks = []
    for name, body in tasks_raw.items():
        _check_name(name, "tasks", where)
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [tasks.{name}] must be a table")
        params = dict(body)
        task_systems = params.pop("systems", list(systems))
        if not isinstance(task_systems, list) or not task_systems \
                or not all(isinstance(s, str) for s in task_systems):
            raise ConfigError(f"{where}: [tasks.{name}] systems must be a non-empty list of "
                              f"system names")
        for system in task_systems:
            if system not in variants and system not in systems:
                raise ConfigError(f"{where}: [tasks.{name}] systems names "
                                  f"{clipped(repr(system))}, which is not a [systems.*] "
                                  f"table; defined: {listing(variants)}")
        # a swept system runs as all its variants; a variant may also be named alone
        expanded = [v for system in task_systems for v in variants.get(system, [system])]
        tasks.append(TaskSpec(name, params, tuple(dict.fromkeys(expanded))))
    return tasks


def _check_keys(table: dict, allowed: tuple[str, ...], problem: str) -> None:
    """Refuse the first key of ``table`` not in ``allowed``: ``problem 'key'``, a
    did-you-mean when one is close, and what is allowed."""
    unknown = [key for key in table if key not in allowed]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{problem} {clipped(repr(unknown[0]), 60)}{hint} (allowed: "
                      f"{listing(allowed, limit=len(allowed), width=200)})")


def _table(raw: dict, key: str, where: str, default: dict | None = None) -> dict:
    value = raw.get(key, default if default is not None else {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table ([{key}] or [{key}.NAME])")
    return value


def _component(value: Any, where: str) -> ComponentSpec:
    if isinstance(value, str):
        return ComponentSpec(value)
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        params = {k: v for k, v in value.items() if k != "name"}
        return ComponentSpec(value["name"], params)
    raise ConfigError(f"{where} must be a component name or a table with 'name', "
                      f"e.g. {{ name = \"exact\" }}")


def _merged(name: str, body: Any, defaults: dict, where: str) -> dict:
    """The table of [systems.NAME] over [defaults], its keys checked."""
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: [systems.{name}] must be a table")
    _check_keys(body, SYSTEM_KEYS, f"{where}: [systems.{name}] has unknown key")
    return {**defaults, **body}


def _sweep_axes(name: str, merged: dict, where: str) -> dict[tuple[str, str], list]:
    """``(role, parameter) -> values`` of each list-valued component parameter; none empty
    and none repeating a value."""
    axes = {(role, key): value for role in (*ROLES, "retrieval_key")
            if isinstance(merged.get(role), dict)
            for key, value in merged[role].items() if isinstance(value, list)}
    for (role, key), values in axes.items():
        table = f"{where}: [systems.{name}] {clipped(role)}.{clipped(key, 40)}"
        if not values:
            raise ConfigError(f"{table}: an empty sweep; give at least one value")
        seen = Counter(repr(v) for v in values)
        if len(seen) != len(values):
            repeated = [clipped(value, 40) for value, n in seen.items() if n > 1]
            raise ConfigError(f"{table}: the sweep repeats a value: {listing(repeated)}")
    return axes


def _swept_axes(name: str, axes: dict[tuple[str, str], list]) -> list[tuple[str, int]]:
    """``(label, length)`` of the axes that sweep (a one-value list passes its value on;
    it is no sweep and leaves the name alone); a parameter swept in two roles (k of the
    head and of the key) is labelled with its role."""
    swept = [axis for axis, values in axes.items() if len(values) > 1]
    short = [key for _, key in swept]
    return [(key if short.count(key) == 1 else f"{role}.{key}", len(axes[(role, key)]))
            for role, key in swept]


def _axes_text(axes: list[tuple[str, int]], shown: int = 4) -> str:
    """``expansion_search x k x ...``: a sweep's axes for a one-line message."""
    labels = [clipped(label, 30) for label, _ in axes[:shown]]
    return " x ".join(labels + (["..."] if len(axes) > shown else []))


def _expand_sweep(name: str, body: Any, defaults: dict,
                  where: str) -> list[tuple[str, dict, Sweep | None]]:
    """``(variant name, system table, sweep)`` per combination of the values of the
    system's list-valued component parameters; the system itself when none is a list."""
    merged = _merged(name, body, defaults, where)
    axes = _sweep_axes(name, merged, where)
    if not axes:
        return [(name, merged, None)]
    swept = [axis for axis, values in axes.items() if len(values) > 1]
    labels = dict(zip(swept, (label for label, _ in _swept_axes(name, axes)), strict=True))
    out: list[tuple[str, dict, Sweep | None]] = []
    for combination in itertools.product(*axes.values()):
        system = {role: dict(value) if isinstance(value, dict) else value
                  for role, value in merged.items()}
        chosen = dict(zip(axes, combination, strict=True))
        for (role, key), value in chosen.items():
            system[role][key] = value
        if not swept:
            return [(name, system, None)]
        suffix = ",".join(f"{labels[axis]}={_value_label(chosen[axis])}" for axis in swept)
        variant = f"{name}[{suffix}]"
        if not SAFE_NAME.match(variant):
            raise ConfigError(f"{where}: [systems.{name}]: the sweep variant "
                              f"{clipped(repr(variant))} is not a usable name (at most 120 "
                              f"characters: letters, digits and _ . + = , @ [ ] -); shorten "
                              f"the system name or use simpler values")
        out.append((variant, system, Sweep(name, {f"{role}.{key}": chosen[(role, key)]
                                                  for role, key in swept})))
    return out


def _value_label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "-".join(map(_value_label, value)) if isinstance(value, list) else str(value)


def _system(name: str, merged: dict, where: str, sweep: Sweep | None = None) -> SystemSpec:
    """The system ``name`` from its table merged over [defaults]."""
    parts: dict[str, Any] = {}
    for role in ROLES:
        if role in merged:
            parts[role] = _component(merged[role], f"{where}: [systems.{name}] {role}")
        elif role in ("image_encoder", "text_encoder"):
            raise ConfigError(f"{where}: [systems.{name}] has no {role}; set it there or "
                              f"in [defaults]")
    if "retrieval_key" in merged:
        parts["retrieval_key"] = _component(merged["retrieval_key"],
                                            f"{where}: [systems.{name}] retrieval_key")
    if "knowledge" in merged:
        parts["knowledge"] = _knowledge(merged["knowledge"], f"{where}: [systems.{name}] "
                                                             f"knowledge")
    if "fusion_head" not in parts and "joint_embedding" not in parts:
        raise ConfigError(f"{where}: [systems.{name}] has neither a fusion_head nor a "
                          f"joint_embedding; give it one")
    return SystemSpec(name=name, sweep=sweep, **parts)


def _knowledge(value: Any, where: str) -> KnowledgeSpec:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, e.g. {{ dataset = \"coco\", "
                          f"split = \"train\" }}")
    return parse_options(KnowledgeSpec, value, where)


def _check_name(name: str, table: str, where: str) -> None:
    if not SAFE_NAME.match(name) or ".." in name:
        raise ConfigError(f"{where}: [{table}.{clipped(repr(name), 60)}]: a name must be one "
                          f"path component of at most 120 characters (letters, digits and "
                          f"_ . + = , @ [ ] -), since it names a directory of the run")
