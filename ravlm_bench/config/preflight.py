"""Validate a parsed suite against the registry before any work: every error here is exit 2.

Checked before the run starts (:func:`check_suite`): every component a system names exists
and accepts the parameters given (declared types, did-you-mean for misspellings); a joint
embedding sits in ``joint_embedding``, not ``fusion_head``; every task exists, accepts its
parameters (declared, and by its own factory) and gets systems that have the head interface
it needs; every ``[data.*]`` table names a registered dataset and its parameters. Checked
once a task's data is built (:func:`check_against_data`): a fusion head's ``k`` against its
knowledge base. Messages name the suite file, the table and the key, and cut the lists
they quote short.
"""

from __future__ import annotations

from ravlm_bench.config.suite import (
    FIXED_KEYS,
    ROLE_KINDS,
    ROLES,
    SHARD_INDEX,
    ComponentSpec,
    KnowledgeSpec,
    Suite,
    SystemSpec,
)
from ravlm_bench.foundation.errors import ConfigError, DataError, clipped, listing
from ravlm_bench.plugin_host.contracts import capability
from ravlm_bench.plugin_host.registry import Registry


def check_suite(suite: Suite, registry: Registry) -> None:
    """Raise :class:`ConfigError` for the first problem."""
    where = str(suite.path)
    for system in suite.systems.values():
        _check_system(system, registry, where)
    for dataset, params in suite.data.items():
        table = f"{where}: [data.{clipped(dataset, 40)}]"
        entry = _entry(registry, "datasets", dataset, table)
        entry.check({k: v for k, v in params.items() if k != "root"} if
                    entry.params.get("root") is None else params, table)
    for task_spec in suite.tasks:
        table = f"{where}: [tasks.{task_spec.name}]"
        entry = _entry(registry, "tasks", task_spec.name, table)
        entry.check(task_spec.params, table)
        _check_task_systems(task_spec, suite.systems, registry, table)


def _entry(registry: Registry, kind: str, name: str, where: str):
    try:
        return registry.get(kind, name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_system(system: SystemSpec, registry: Registry, where: str) -> None:
    table = f"{where}: [systems.{system.name}]"
    _check_joint_embedding_role(system, registry, table)
    for role in ROLES:
        spec = getattr(system, role)
        if spec is None:
            continue
        entry = _entry(registry, ROLE_KINDS[role], spec.name, f"{table} {role}")
        params = spec.params
        if role == "retriever" and SHARD_INDEX in params:
            if not isinstance(params[SHARD_INDEX], bool):
                raise ConfigError(f"{table} retriever: {SHARD_INDEX} must be true or false, "
                                  f"got {params[SHARD_INDEX]!r}")
            params = {k: v for k, v in params.items() if k != SHARD_INDEX}
        entry.check(params, f"{table} {role}")
    _check_retrieval_key(system, registry, table)
    if system.knowledge is not None:
        _entry(registry, "datasets", system.knowledge.dataset, f"{table} knowledge")
        if system.retriever is None:
            raise ConfigError(f"{table} knowledge: the system has no retriever to search it")


def _check_retrieval_key(system: SystemSpec, registry: Registry, table: str) -> None:
    """A fixed key takes no parameters; any other names a joint embedding."""
    key = system.retrieval_key
    if key.name in FIXED_KEYS:
        if key.params:
            raise ConfigError(f"{table} retrieval_key: {key.name!r} takes no parameters")
        return
    where = f"{table} retrieval_key"
    if key.name not in registry.names("joint-embeddings"):
        raise ConfigError(f"{where}: {clipped(repr(key.name))} is neither "
                          f"{', '.join(FIXED_KEYS)} nor a joint embedding "
                          f"({listing(registry.names('joint-embeddings'))})")
    registry.get("joint-embeddings", key.name).check(key.params, where)
    if system.knowledge is None and _learns_from_evidence(registry, key):
        raise ConfigError(f"{where}: {key.name!r} learns from gold evidence, which only an "
                          f"external knowledge base names; give the system a knowledge "
                          f"table (e.g. knowledge = {{ dataset = \"passages\", split = "
                          f"\"corpus\" }})")


def _learns_from_evidence(registry: Registry, key: ComponentSpec) -> bool:
    """Is the joint embedding ``key`` names trained on gold evidence (its declared
    ``evidence``)? Creating one builds no model; a factory that fails here fails again,
    naming its plugin, in its cells."""
    try:
        probe = registry.create("joint-embeddings", key.name, dim=2, **key.params)
    except Exception:
        return False
    return bool(capability(probe, "joint-embeddings", "evidence"))


def _check_joint_embedding_role(system: SystemSpec, registry: Registry, table: str) -> None:
    """A joint embedding named as the fusion head is refused with the line to write."""
    head = system.fusion_head
    if head is None or head.name in registry.names("fusion-heads") \
            or head.name not in registry.names("joint-embeddings"):
        return
    raise ConfigError(f"{table} fusion_head: {head.name!r} is a joint embedding, not a fusion "
                      f"head; write joint_embedding = {{ name = \"{head.name}\" }} instead")


def _check_task_systems(task_spec, systems: dict[str, SystemSpec], registry: Registry,
                        table: str) -> None:
    """Systems must have what the task's head interface needs. A task whose factory refuses
    its options (a ConfigError or DataError) stops the run here; one that breaks otherwise
    is left to fail its own cells, with the plugin named."""
    try:
        task = registry.create("tasks", task_spec.name, **task_spec.params)
        head = capability(task, "tasks", "head")
    except (ConfigError, DataError) as exc:
        raise ConfigError(f"{table}: {exc}") from None
    except Exception:
        return
    for name in task_spec.systems:
        system = systems[name]
        if head == "fusion-head":
            if system.fusion_head is None:
                raise ConfigError(f"{table}: system {name!r} has no fusion_head, which this "
                                  f"task needs")
            if system.retriever is None and _retrieves(system.fusion_head, registry):
                raise ConfigError(f"{where_system(table, name)} fusion_head: "
                                  f"{system.fusion_head.name!r} uses retrieval; give the "
                                  f"system a retriever")
        if head == "joint-embedding":
            if system.joint_embedding is None:
                raise ConfigError(f"{table}: system {name!r} has no joint_embedding, which "
                                  f"this task needs")
            if system.retriever is None:
                raise ConfigError(f"{table}: system {name!r} has no retriever, which this "
                                  f"task needs to rank")


def _retrieves(head: ComponentSpec, registry: Registry) -> bool:
    """Does the fusion head declare that it retrieves? (Creating a head is cheap: no
    weights; a factory that fails here fails again, naming its plugin, in its cells.)"""
    try:
        probe = registry.create("fusion-heads", head.name, dim=2, **head.params)
    except Exception:
        return False
    return bool(capability(probe, "fusion-heads", "uses_retrieval"))


def where_system(table: str, name: str) -> str:
    """``[tasks.T]`` -> ``[systems.NAME]`` in the same file."""
    return table.rsplit("[", 1)[0] + f"[systems.{name}]"


class SuiteDataError(ConfigError):
    """A suite setting that the task's data makes impossible: the run stops (exit 2)."""


def check_against_data(suite: Suite, registry: Registry, task_spec, data,
                       knowledge_sizes: dict | None = None) -> None:
    """Settings only the task's data can refute, checked once it is built and before any of
    its cells encode: a fusion head's ``k`` must be below the knowledge base's size, or
    every query would retrieve the whole knowledge base; a head that reads the neighbours'
    labels cannot use an external knowledge base (it has none).

    ``knowledge_sizes``: system name -> its external knowledge base's size."""
    from ravlm_bench.plugin_host.options import resolved

    for name in task_spec.systems:
        system = suite.systems[name]
        head = system.fusion_head
        if head is None or system.retriever is None:
            continue
        size = (knowledge_sizes or {}).get(name, len(data.train))
        if system.knowledge is not None:
            _check_labels_for_external_knowledge(suite, registry, system.name, head,
                                                 system.knowledge)
        k = resolved(registry.get("fusion-heads", head.name).params, head.params).get("k")
        if isinstance(k, int) and k >= size:
            raise SuiteDataError(
                f"{suite.path}: [systems.{name}] fusion_head: k = {k} is not below the "
                f"{size} items of its knowledge base for task {task_spec.name!r}; every "
                f"query would retrieve all of it")


def _check_labels_for_external_knowledge(suite: Suite, registry: Registry, system: str,
                                         head: ComponentSpec, knowledge: KnowledgeSpec) -> None:
    """A head that reads its neighbours' labels cannot retrieve from an external knowledge
    base, whose items have none."""
    # creating a head is cheap (no weights): its declared capability is what counts
    probe = registry.create("fusion-heads", head.name, dim=2, **head.params)
    if capability(probe, "fusion-heads", "neighbour_labels") == "required":
        raise SuiteDataError(
            f"{suite.path}: [systems.{system}] fusion_head: {head.name!r} reads its "
            f"neighbours' labels, and the knowledge base {knowledge.dataset}/"
            f"{clipped(knowledge.split, 40)} has none; use a head that does not (e.g. xattn)")
