"""Where a suite's datasets live, opened as dataset components: the ``root`` of its
``[data.NAME]`` table, the embedded demo world (``root = "demo"``, or no root and ``demo =
true`` in ``[run]``; generated on first use at ``[run]``'s ``demo_size``), or
``$RAVLM_DATA/NAME``. A missing directory is a one-line configuration error naming the suite
file and the table to fix.
"""

from __future__ import annotations

from pathlib import Path

from ravlm_bench.config.suite import ComponentSpec, Suite
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.stages.components import Component, ComponentFactory


class DataSources:
    def __init__(self, suite: Suite, factory: ComponentFactory):
        self.suite = suite
        self.factory = factory

    def dataset(self, name: str) -> Component:
        """The dataset plugin ``name`` opened on its directory (the demo world generated
        first when the suite asks for it)."""
        params = self.resolve_root(name, dict(self.suite.data.get(name, {})))
        return self.factory.create("datasets", ComponentSpec(name, params))

    def check(self, name: str) -> None:
        """Fail now if ``name``'s directory is missing; generates nothing."""
        self.resolve_root(name, dict(self.suite.data.get(name, {})), generate=False)

    def resolve_root(self, name: str, params: dict, *, generate: bool = True) -> dict:
        from ravlm_bench.foundation.paths import data_root

        root = params.get("root")
        run = self.suite.run
        if root == "demo" or (root is None and run.demo):
            if not generate:
                return params
            from ravlm_bench.demo import ensure_demo_world

            world = ensure_demo_world(seed=0, size=run.demo_size)
            params["root"] = str(world / name)
        elif root is None:
            env_root = data_root(name)
            if env_root is None:
                raise ConfigError(
                    f"{self.suite.path}: no data for {name!r}; set root in [data.{name}] or "
                    f"point $RAVLM_DATA at a folder holding {name}/")
            params["root"] = str(env_root)
        if not Path(params["root"]).expanduser().exists():
            raise ConfigError(f"{self.suite.path}: data directory for {name!r} does not "
                              f"exist: {params['root']}; set root in [data.{name}] or "
                              f"$RAVLM_DATA")
        return params
