"""Creating a system's components from the registry (encoders shared within a run,
retrievers and heads made fresh), and :func:`guard`, through which every call into plugin
code goes, so a factory that raises or an object that breaks the contract becomes a one-line
``ComponentError`` naming the plugin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ravlm_bench.config.suite import SHARD_INDEX, ComponentSpec
from ravlm_bench.foundation.errors import ComponentError, DataError, RavlmError
from ravlm_bench.plugin_host.contracts import ContractViolation
from ravlm_bench.plugin_host.registry import Registry


@dataclass
class Component:
    """A created component with what error messages and provenance need."""

    kind: str  # registry kind, e.g. "retrievers"
    name: str
    plugin: str
    obj: Any
    params: dict
    params_digest: str = ""  # of the resolved parameters, declared defaults filled in

    def fingerprint(self) -> str | None:
        """The component's own fingerprint with its resolved parameters appended, so a
        parameter the plugin forgot in its fingerprint still changes every cache key."""
        method = getattr(self.obj, "fingerprint", None)
        if method is None:
            return None
        with guard(self):
            value = method()
        if not isinstance(value, str) or not value:
            raise ComponentError(self.kind[:-1], self.name, self.plugin,
                                 f"fingerprint() returned {value!r}, expected a non-empty str")
        return f"{value}|params={self.params_digest}" if self.params_digest else value

    def describe(self) -> dict:
        return {"name": self.name, "plugin": self.plugin, "params": self.params,
                "fingerprint": self.fingerprint()}


@contextmanager
def guard(component: Component, what: str = "") -> Iterator[None]:
    """Turn any failure inside plugin code into a ComponentError naming the plugin."""
    try:
        yield
    except ComponentError:
        raise
    except ContractViolation as exc:
        raise ComponentError(component.kind[:-1], component.name, component.plugin,
                             f"broke the contract: {exc}") from exc
    except DataError:
        raise  # bad data is the data's fault, and its message names the file and item
    except RavlmError as exc:
        raise ComponentError(component.kind[:-1], component.name, component.plugin,
                             str(exc)) from exc
    except Exception as exc:
        step = f"{what} failed: " if what else ""
        raise ComponentError(component.kind[:-1], component.name, component.plugin,
                             f"{step}{type(exc).__name__}: {exc}") from exc


class ComponentFactory:
    """Creates components, reusing one instance per (kind, spec, extras) within a run.

    Encoders are expensive to load and stateless, so systems that share an encoder share
    the instance; retrievers and fusion heads are stateful and made fresh with ``fresh``.
    """

    def __init__(self, registry: Registry):
        self.registry = registry
        self._memo: dict[str, Component] = {}

    def create(self, kind: str, spec: ComponentSpec, *, fresh: bool = False,
               **extras: Any) -> Component:
        key = json.dumps([kind, spec.name, spec.params, extras], sort_keys=True, default=str)
        if not fresh and key in self._memo:
            return self._memo[key]
        entry = self.registry.get(kind, spec.name)
        obj = self.registry.create(kind, spec.name, **plugin_params(kind, spec.params), **extras)
        component = Component(kind, spec.name, entry.plugin, obj, dict(spec.params),
                              entry.digest(spec.params))
        if not fresh:
            self._memo[key] = component
        return component


def plugin_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the plugin takes: a retriever's ``shard_index`` is the harness's."""
    if kind == "retrievers":
        return {k: v for k, v in params.items() if k != SHARD_INDEX}
    return dict(params)
