"""Building the plugin manager: hook specs, entry points, local plugins, then a check.

There is no module-global manager: every command (and every test) builds a fresh one with
:func:`get_plugin_manager`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from ravlm_bench.foundation.errors import PluginLoadError
from ravlm_bench.plugin_host import hookspecs

PROJECT_NAME = hookspecs.PROJECT_NAME
DISABLE_ENV = "RAVLM_BENCH_DISABLE"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from, for ``ravlm-bench plugins``."""

    name: str
    distribution: str  # "" for a local -p plugin
    version: str
    origin: str  # "entry point" or the module/path given to -p


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import or register; it is skipped, not fatal."""

    source: PluginSource
    error: str

    def message(self) -> str:
        where = (
            f"distribution {self.source.distribution!r}, entry point {self.source.name!r}"
            if self.source.distribution
            else f"local plugin {self.source.origin!r}"
        )
        return f"plugin {self.source.name!r} ({where}) is broken: {self.error}"


class RavlmPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where each plugin came from and what broke."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.sources: dict[str, PluginSource] = {}
        self.broken: dict[str, BrokenPlugin] = {}

    def mark_broken(self, source: PluginSource, error: BaseException | str) -> BrokenPlugin:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        broken = BrokenPlugin(source, " ".join(str(text).split()))
        self.broken[source.name] = broken
        if self.get_plugin(source.name) is not None:
            self.unregister(name=source.name)
        log.warning(broken.message())
        return broken


def disabled_from_env(environ: os._Environ | dict | None = None) -> list[str]:
    value = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return [name.strip() for name in value.split(",") if name.strip()]


def get_plugin_manager(
    plugins: Iterable[str] = (),
    *,
    disabled: Iterable[str] = (),
    entry_points: bool = True,
    strict: bool = False,
) -> RavlmPluginManager:
    """Build a fresh plugin manager.

    :param plugins: extra plugins for this manager only: importable module names or paths to
        ``.py`` files; ``no:NAME`` disables plugin NAME, as pytest's ``-p`` does.
    :param disabled: plugin names to block (entry-point names or local module names); the
        ``RAVLM_BENCH_DISABLE`` environment variable (comma-separated) adds to these.
    :param entry_points: load every entry point of the group ``ravlm_bench``.
    :param strict: raise :class:`PluginLoadError` for any broken plugin instead of skipping it.
    """
    pm = RavlmPluginManager()
    pm.add_hookspecs(hookspecs)

    local = []
    blocked = set(disabled) | set(disabled_from_env())
    for spec in plugins:
        if spec.startswith("no:"):
            blocked.add(spec[3:])
        else:
            local.append(spec)
    for name in blocked:
        pm.set_blocked(name)

    if entry_points:
        _load_entry_points(pm)
    for spec in local:
        _load_local_plugin(pm, spec)

    # A misspelt hook name must fail loudly, not be silently ignored.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or str(exc.plugin)
        source = pm.sources.get(plugin_name, PluginSource(plugin_name, "", "", "?"))
        pm.mark_broken(source, _unknown_hook_message(exc))

    if strict and pm.broken:
        raise PluginLoadError("; ".join(b.message() for b in pm.broken.values()))
    return pm


def _unknown_hook_message(exc: pluggy.PluginValidationError) -> str:
    # pluggy's message names the hook; keep it and add the list of valid names.
    valid = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
    return f"{exc} (known hooks: {valid})"


def _load_entry_points(pm: RavlmPluginManager) -> None:
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != PROJECT_NAME or ep.name in seen:
                continue
            seen.add(ep.name)
            if pm.is_blocked(ep.name):
                continue
            dist_name = dist.metadata["name"]
            source = PluginSource(ep.name, dist_name, dist.version, "entry point")
            pm.sources[ep.name] = source
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the tool
                pm.mark_broken(source, exc)


def _load_local_plugin(pm: RavlmPluginManager, spec: str) -> None:
    path = Path(spec)
    name = path.stem if spec.endswith(".py") else spec
    source = PluginSource(name, "", "", spec)
    pm.sources[name] = source
    if pm.is_blocked(name):
        return
    try:
        module = _import_path(path, name) if spec.endswith(".py") else importlib.import_module(spec)
        pm.register(module, name=name)
    except Exception as exc:
        pm.mark_broken(source, exc)


def _import_path(path: Path, name: str) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no such plugin file: {path}")
    module_name = f"ravlm_local_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
