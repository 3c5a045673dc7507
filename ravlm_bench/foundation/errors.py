"""The exceptions the harness raises. Each message is one line a user can act on."""


class RavlmError(Exception):
    """Base class: bad usage, configuration or input. The CLI exits 2 with the message."""

    exit_code = 2


class ConfigError(RavlmError):
    """A suite, option or plugin setting is wrong."""


class DataError(RavlmError):
    """A dataset file or item is missing, malformed or unusable."""


class PluginLoadError(RavlmError):
    """A plugin could not be imported or registered (fatal only under --strict)."""


class ComponentError(RavlmError):
    """A component's factory raised, or the component broke the public contract.

    Fails the run (or the cell) that needs the component, naming the plugin.
    """

    exit_code = 1

    def __init__(self, kind: str, name: str, plugin: str, message: str):
        self.kind, self.name, self.plugin = kind, name, plugin
        super().__init__(f"{kind} {name!r} (plugin {plugin!r}): {message}")


def cause(exc: BaseException) -> str:
    """``TypeName: first line of its message``: how a one-line error quotes what caused it."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
