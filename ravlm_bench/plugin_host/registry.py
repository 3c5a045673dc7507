"""The component registry: every component the loaded plugins register, by kind and name.

Building it calls each plugin's registration hooks one plugin at a time, so every entry
knows which plugin registered it; factories are stored, never called, until
:meth:`Registry.create`. Each entry carries its parameters (:mod:`ravlm_bench.plugin_host.options`),
declared with ``register(..., options=Dataclass)`` or inferred from the factory.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ravlm_bench.foundation.errors import (
    ComponentError,
    ConfigError,
    RavlmError,
    clipped,
    listing,
)
from ravlm_bench.plugin_host.host import PluginSource, RavlmPluginManager
from ravlm_bench.plugin_host.options import (
    ParamError,
    ParamSpec,
    check_params,
    params_digest,
    spec_from_options,
    spec_from_signature,
)

log = logging.getLogger(__name__)

# kind (as the CLI and suites spell it) -> registration hook
KINDS: dict[str, str] = {
    "image-encoders": "register_image_encoders",
    "text-encoders": "register_text_encoders",
    "retrievers": "register_retrievers",
    "fusion-heads": "register_fusion_heads",
    "joint-embeddings": "register_joint_embeddings",
    "datasets": "register_datasets",
    "tasks": "register_tasks",
    "publishers": "register_publishers",
}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    params: ParamSpec = ParamSpec((), open=True, declared=False)

    @property
    def singular(self) -> str:
        return self.kind[:-1].replace("-", " ")

    def check(self, params: dict[str, Any], where: str) -> None:
        """Raise a ConfigError, prefixed with ``where``, for a parameter this component does
        not accept."""
        try:
            check_params(self.params, params)
        except ParamError as exc:
            raise ConfigError(f"{where}: {self.singular} {self.name!r}: {exc}") from None

    def digest(self, params: dict[str, Any]) -> str:
        """A digest of the resolved parameters (declared defaults filled in)."""
        return params_digest(self.params, params)


class Registry:
    """Lookup of registered components by kind and name."""

    def __init__(self, pm: RavlmPluginManager):
        self.pm = pm
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for plugin_name, plugin in list(pm.list_name_plugin()):
            if plugin is not None and plugin_name not in pm.broken:
                self._collect(plugin_name, plugin)

    # -- building -------------------------------------------------------------------------

    def _collect(self, plugin_name: str, plugin: Any) -> None:
        staged: list[Entry] = []
        for kind, hook_name in KINDS.items():
            impl = getattr(plugin, hook_name, None)
            if impl is None or not _is_hookimpl(self.pm, plugin, hook_name):
                continue

            def register(name: str, factory: Callable[..., Any], *, description: str = "",
                         options: type | None = None, _kind: str = kind) -> None:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"component name must be a non-empty string, got {name!r}")
                if not callable(factory):
                    raise TypeError(f"factory for {name!r} is not callable")
                spec = (spec_from_options(options) if options is not None
                        else spec_from_signature(factory))
                staged.append(Entry(_kind, name, factory, plugin_name, description, spec))

            try:
                impl(register=register)
            except Exception as exc:  # the plugin is skipped; the tool goes on
                self.pm.mark_broken(self.pm.sources.get(plugin_name) or _local(plugin_name), exc)
                return
        for entry in staged:
            self._add(entry)

    def _add(self, entry: Entry) -> None:
        known = self._entries[entry.kind]
        if entry.name in known:
            other = known[entry.name].plugin
            raise ConfigError(
                f"{entry.kind[:-1]} {entry.name!r} is registered twice, by plugin {other!r} "
                f"and by plugin {entry.plugin!r}; disable one with --disable NAME"
            )
        known[entry.name] = entry

    # -- lookup ---------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def entries(self, kind: str) -> Iterator[Entry]:
        for name in self.names(kind):
            yield self._entries[kind][name]

    def by_plugin(self, plugin_name: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for kind, entries in self._entries.items():
            names = sorted(n for n, e in entries.items() if e.plugin == plugin_name)
            if names:
                found[kind] = names
        return found

    def get(self, kind: str, name: str) -> Entry:
        entries = self._kind(kind)
        if name in entries:
            return entries[name]
        message = f"unknown {kind[:-1].replace('-', ' ')} {clipped(repr(name))}"
        close = difflib.get_close_matches(name, entries, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        message += f" Known: {listing(sorted(entries)) if entries else '(none)'}."
        if self.pm.broken:
            broken = "; ".join(b.message() for b in self.pm.broken.values())
            message += f" Note: {broken}"
        raise ConfigError(message)

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Call the factory of ``kind``/``name`` with ``params``.

        A factory that raises becomes a :class:`ComponentError` naming the plugin.
        """
        entry = self.get(kind, name)
        try:
            return entry.factory(**params)
        except RavlmError:
            raise  # configuration and data errors already say what is wrong, and where
        except Exception as exc:
            raise ComponentError(
                kind[:-1], name, entry.plugin, f"factory failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise ConfigError(f"unknown component kind {kind!r}; known: {', '.join(KINDS)}")
        return self._entries[kind]


def _is_hookimpl(pm: RavlmPluginManager, plugin: Any, hook_name: str) -> bool:
    caller = getattr(pm.hook, hook_name, None)
    return caller is not None and any(i.plugin is plugin for i in caller.get_hookimpls())


def _local(name: str) -> PluginSource:
    return PluginSource(name, "", "", name)
