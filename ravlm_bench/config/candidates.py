"""Open retrievers: a suite system whose retriever is :data:`CANDIDATE` leaves it open, and
``ravlm-bench run SUITE --retriever NAME[,NAME...]`` puts each named retriever in its place,
as one system ``<system>[retriever=<name>]`` per retriever, before the suite is parsed (so
sweeps, size limits and name checks see the systems the run will have)."""

from __future__ import annotations

from typing import Any

from ravlm_bench.foundation.errors import ConfigError, clipped

# a system's retriever left open, for the retrievers named with `run --retriever`
CANDIDATE = "<candidate>"


def with_candidates(raw: dict[str, Any], candidates: list[str], where: str) -> dict[str, Any]:
    """``raw`` with every system whose retriever is :data:`CANDIDATE` replaced by one
    system per candidate retriever, ``<system>[retriever=<candidate>]``, its parameters
    kept; a task naming the open system runs all of them."""
    systems = raw.get("systems")
    defaults: dict[str, Any] = raw["defaults"] if isinstance(raw.get("defaults"), dict) \
        else {}
    if not isinstance(systems, dict):
        return raw  # parse_suite says what is wrong with it
    open_systems = [name for name, body in systems.items() if isinstance(body, dict)
                    and _names_candidate(body.get("retriever", defaults.get("retriever")))]
    if not candidates:
        if open_systems:
            raise ConfigError(f"{where}: [systems.{clipped(open_systems[0], 60)}] leaves its "
                              f"retriever open (retriever = \"{CANDIDATE}\"); name the "
                              f"retrievers to benchmark with --retriever NAME[,NAME...]")
        return raw
    if not open_systems:
        raise ConfigError(f"{where}: --retriever {clipped(','.join(candidates), 60)}: no system "
                          f"of the suite leaves its retriever open (retriever = "
                          f"\"{CANDIDATE}\"); name the retriever in the suite instead")
    expanded: dict[str, Any] = {}
    instances: dict[str, list[str]] = {}
    for name, body in systems.items():
        if name not in open_systems:
            expanded[name] = body
            continue
        retriever = body.get("retriever", defaults.get("retriever"))
        for candidate in candidates:
            instance = f"{name}[retriever={candidate}]"
            if instance in systems:  # the suite checks every name's form later
                raise ConfigError(f"{where}: --retriever {clipped(repr(candidate), 60)} makes "
                                  f"system {clipped(repr(instance), 80)}, which is taken")
            params = retriever if isinstance(retriever, dict) else {}
            expanded[instance] = {**body, "retriever": {**params, "name": candidate}}
            instances.setdefault(name, []).append(instance)
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        tasks = {name: _with_instances(body, instances) for name, body in tasks.items()}
    return {**raw, "systems": expanded, "tasks": tasks}


def _names_candidate(retriever: Any) -> bool:
    """Whether a system's retriever value is the open :data:`CANDIDATE`."""
    name = retriever.get("name") if isinstance(retriever, dict) else retriever
    return name == CANDIDATE


def _with_instances(task: Any, instances: dict[str, list[str]]) -> Any:
    """A task table whose system list names each open system's instances instead."""
    if not isinstance(task, dict) or not isinstance(task.get("systems"), list):
        return task
    names = [v for s in task["systems"] for v in (instances.get(s, [s]) if isinstance(s, str)
                                                   else [s])]
    return {**task, "systems": names}
