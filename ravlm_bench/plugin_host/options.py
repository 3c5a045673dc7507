"""Typed component parameters: what a component accepts, checked before any work starts.

A plugin declares a component's parameters as a dataclass and passes it to ``register``::

    @dataclass
    class KnnOptions:
        k: int = option(10, "neighbours that vote", minimum=1)
        weights: Literal["uniform", "similarity"] = option("similarity", "vote weighting")

    register("knn", KnnHead, description="...", options=KnnOptions)

The registry turns the dataclass into :class:`Param` rows (``ravlm-bench list KIND --params``)
and :func:`check_params` validates a suite's parameters against them: an unknown name is an
error with a did-you-mean, a wrong type or value names the parameter and what was expected.
A factory registered without ``options`` has its parameters inferred from its signature
(keyword parameters with defaults; a ``**kwargs`` factory accepts any name): the path for
plugins written before typed options existed.

Supported types: ``int``, ``float`` (an int is accepted), ``str``, ``bool``, ``Literal[...]``,
``list[T]`` of those, ``X | None`` and ``Any``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ravlm_bench.foundation.errors import clipped

# Parameters the harness itself passes to factories; a suite may not set them.
HARNESS_PARAMS = ("dim", "metric")
_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, minimum: float | None = None,
           maximum: float | None = None) -> Any:
    """A dataclass field with a help text and optional numeric bounds (inclusive)."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Param:
    """One declared parameter of a component."""

    name: str
    type: Any  # a typing annotation
    default: Any = _MISSING
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def type_name(self) -> str:
        return _type_name(self.type)

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type_name(),
                "default": None if self.required else self.default,
                "required": self.required, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class ParamSpec:
    """The parameters of one component; ``open`` when undeclared names are accepted too."""

    params: tuple[Param, ...]
    open: bool = False
    declared: bool = True  # False: inferred from the factory's signature

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


class ParamError(ValueError):
    """A suite parameter that the component does not accept; the message says why."""


def spec_from_options(options: type) -> ParamSpec:
    """A :class:`ParamSpec` from an options dataclass."""
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise TypeError(f"options must be a dataclass type, got {options!r}")
    hints = typing.get_type_hints(options)
    params = []
    for f in dataclasses.fields(options):
        default = f.default
        if default is _MISSING and f.default_factory is not _MISSING:
            default = f.default_factory()
        meta: typing.Mapping[str, Any] = f.metadata or {}
        params.append(Param(f.name, hints.get(f.name, Any), default, meta.get("help", ""),
                            meta.get("minimum"), meta.get("maximum")))
    return ParamSpec(tuple(params))


def spec_from_signature(factory: Callable[..., Any]) -> ParamSpec:
    """Parameters inferred from a factory's keyword parameters (undeclared plugins)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return ParamSpec((), open=True, declared=False)
    try:
        target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back on the defaults' types
        hints = {}
    params, open_ = [], False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name in HARNESS_PARAMS \
                or p.name == "self":
            continue
        default = p.default if p.default is not p.empty else _MISSING
        kind = hints.get(p.name, Any if default in (_MISSING, None) else type(default))
        params.append(Param(p.name, kind, default))
    return ParamSpec(tuple(params), open=open_, declared=False)


def check_params(spec: ParamSpec, given: dict[str, Any]) -> None:
    """Raise :class:`ParamError` for the first parameter in ``given`` that ``spec`` rejects,
    or a required one that is missing."""
    for name, value in given.items():
        if name in HARNESS_PARAMS:
            raise ParamError(f"parameter {name!r} is set by the harness, not the suite"
                             + (" (set the suite's top-level metric instead)"
                                if name == "metric" else ""))
        param = spec.get(name)
        if param is None:
            if spec.open:
                continue
            message = f"unknown parameter {clipped(repr(name), 60)}"
            close = difflib.get_close_matches(name, spec.names(), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            known = ", ".join(spec.names()) or "none"
            raise ParamError(f"{message} (parameters: {known})")
        problem = _check_value(param.type, value)
        if problem is None:
            problem = _check_bounds(param, value)
        if problem is not None:
            raise ParamError(f"parameter {clipped(repr(name), 60)} = {_show(value)}: {problem}")
    for param in spec.params:
        if param.required and param.name not in given:
            raise ParamError(f"parameter {param.name!r} ({param.type_name()}) is required")


def resolved(spec: ParamSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Every declared parameter with its value: the suite's, else the default."""
    values = {p.name: p.default for p in spec.params if not p.required}
    values.update(given)
    return values


def params_digest(spec: ParamSpec, given: dict[str, Any]) -> str:
    """A short digest of the resolved parameters, for fingerprints and cache keys: a
    parameter whose default changes, or that a plugin forgot in its own fingerprint, still
    changes the key."""
    text = json.dumps(resolved(spec, given), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# Type checks
# ---------------------------------------------------------------------------------------


def _check_value(kind: Any, value: Any) -> str | None:
    """None if ``value`` fits ``kind``, else what was expected."""
    if kind is Any:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if any(_check_value(option, value) is None for option in options):
            return None
        return f"expected {_type_name(kind)}"
    if origin is Literal:
        choices = typing.get_args(kind)
        return None if value in choices and type(value) in {type(c) for c in choices} \
            else f"expected one of {', '.join(_show(c) for c in choices)}"
    if origin in (list, tuple):
        if not isinstance(value, list):
            return f"expected a list ({_type_name(kind)})"
        args = typing.get_args(kind)
        inner = args[0] if args else Any
        for item in value:
            if _check_value(inner, item) is not None:
                return f"expected {_type_name(kind)}; {_show(item)} is not {_type_name(inner)}"
        return None
    if kind is type(None):
        return None if value is None else "expected nothing (None)"
    if kind is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) \
            else "expected an integer"
    if kind is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else "expected a number"
    if kind is str:
        return None if isinstance(value, str) else "expected a string"
    if isinstance(kind, type):
        return None if isinstance(value, kind) else f"expected {kind.__name__}"
    return None  # an annotation this checker does not know: trust the plugin


def _check_bounds(param: Param, value: Any) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if param.minimum is not None and value < param.minimum:
        return f"must be >= {param.minimum:g}"
    if param.maximum is not None and value > param.maximum:
        return f"must be <= {param.maximum:g}"
    return None


def _type_name(kind: Any) -> str:
    if kind is Any:
        return "any"
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(kind))
    if origin is Literal:
        return " | ".join(_show(c) for c in typing.get_args(kind))
    if origin in (list, tuple):
        args = typing.get_args(kind)
        return f"list[{_type_name(args[0]) if args else 'any'}]"
    if kind is type(None):
        return "none"
    return getattr(kind, "__name__", str(kind))


def _show(value: Any) -> str:
    """``value`` as a suite writes it, cut to one short line: a message quotes what the
    user wrote, which may be any length."""
    try:
        text = json.dumps(value) if isinstance(value, (str, bool, int, float, list)) \
            or value is None else repr(value)
    except (RecursionError, ValueError):  # nested too deeply, or an int too long to print
        text = f"<a {type(value).__name__}>"
    return clipped(text, 80)


def parse_options(options: type, params: dict[str, Any], component: str = "") -> Any:
    """``options(**params)`` after :func:`check_params` (names, types, bounds, required):
    what a component calls to turn its suite parameters into its options object. Errors are
    :class:`~ravlm_bench.foundation.errors.ConfigError`, prefixed with ``component``."""
    from ravlm_bench.foundation.errors import ConfigError

    prefix = f"{component}: " if component else ""
    try:
        check_params(spec_from_options(options), params)
    except ParamError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    try:
        return options(**params)
    except ConfigError as exc:  # the dataclass's own checks (__post_init__)
        raise ConfigError(f"{prefix}{exc}") from None
