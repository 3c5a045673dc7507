"""ravlm-bench: a plugin-based harness for retrieval-augmented vision-language models.

The public names a plugin author needs are re-exported here; everything else is internal.
"""

__version__ = "0.1.0"

from ravlm_bench.errors import ComponentError, ConfigError, DataError, RavlmError
from ravlm_bench.hookspecs import hookimpl, hookspec
from ravlm_bench.host import PROJECT_NAME, get_plugin_manager
from ravlm_bench.registry import KINDS, Registry

__all__ = [
    "KINDS",
    "PROJECT_NAME",
    "ComponentError",
    "ConfigError",
    "DataError",
    "RavlmError",
    "Registry",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
]
