"""Factories that import their implementation when first called.

Loading the plugins (``ravlm-bench plugins``, ``list``) then imports neither torch nor the
dataset parsers; only a component that is created pays for its imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_factory(module: str, attribute: str) -> Callable[..., Any]:
    """``module.attribute(**params)``, importing ``module`` on the first call."""
    def create(**params: Any) -> Any:
        return getattr(importlib.import_module(module), attribute)(**params)

    create.__name__ = create.__qualname__ = f"create_{attribute}"
    create.__doc__ = f"{module}.{attribute}(**params), imported when first called"
    return create
