"""Reading and writing the suites the fuzzer mutates: TOML text from a parsed document,
including values a suite must refuse (NaN, infinities, dates, unsafe keys)."""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from typing import Any


def toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(text)



def to_toml(doc: dict) -> str:
    """A TOML document for ``doc``: tables two levels deep as [headers], deeper ones inline."""
    lines: list[str] = []
    _toml_table(doc, (), lines)
    return "\n".join(lines).strip() + "\n"


def _toml_table(table: dict, path: tuple, lines: list[str]) -> None:
    nested = {k: v for k, v in table.items() if isinstance(v, dict) and len(path) < 2}
    for key, value in table.items():
        if key not in nested:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in nested.items():
        lines += ["", "[" + ".".join(toml_key(k) for k in (*path, key)) + "]"]
        _toml_table(value, (*path, key), lines)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_string(text: str) -> str:
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t").replace("\r", "\\r"))
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(type(value).__name__)
