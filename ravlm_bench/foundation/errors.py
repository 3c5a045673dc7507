"""The exceptions the harness raises, and the helpers that keep their messages short: each
message is one line a user can act on, of bounded length however many names it could list
(:func:`listing`) or however long a value it quotes (:func:`clipped`)."""

from collections.abc import Iterable


class RavlmError(Exception):
    """Base class: bad usage, configuration or input. The CLI exits 2 with the message."""

    exit_code = 2


class ConfigError(RavlmError):
    """A suite, option or plugin setting is wrong."""


class DataError(RavlmError):
    """A dataset file or item is missing, malformed or unusable."""


class PluginLoadError(RavlmError):
    """A plugin could not be imported or registered (fatal only under --strict)."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): unwound like Ctrl-C, so the same cleanup
    runs (the run directory's lock is released, finished cells stay), but the CLI exits
    143 (128 + 15) with this message instead of 130."""

    exit_code = 143


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


def listing(items: Iterable[object], limit: int = 8, width: int = 160) -> str:
    """``a, b, c and 12 more``: the first items (at most ``limit``, and no more than fit in
    about ``width`` characters; always the first), so a message that names what exists
    stays one short line however many things there are."""
    names = [str(item) for item in items]
    shown: list[str] = []
    for name in names[:limit]:
        if shown and len(", ".join([*shown, name])) > width:
            break
        shown.append(clipped(name, width))
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "") if names else "none"


def clipped(text: object, width: int = 80) -> str:
    """``text`` as one line of at most ``width`` characters (cut with ``...``): how a
    message quotes a value the user wrote, which may be any length."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[:max(width - 3, 1)] + "..."
