"""Strict JSON (and JSON Lines) reading: one-line errors with file, line and column (or
nesting depth); required-key checks.

Annotation files reach hundreds of megabytes, so the parser takes an ``object_hook`` that
loaders use to turn each record into a small tuple as soon as it is parsed (dropping what
they never read, such as segmentation polygons): peak memory stays below a plain
``json.load`` of the same file. The cyclic garbage collector is paused while parsing,
because it would otherwise rescan the growing object graph again and again.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ravlm_bench.api import DataError

_CONSTANT = re.compile(r"(?<![\w\"])(-?Infinity|NaN)(?![\w\"])")
# \uD800-\uDFFF escapes (after a run of backslashes: an even run is escaped backslashes).
# JSON accepts a lone one, but it is no character, and the Arrow tables (UTF-8) cannot hold it
_SURROGATE_ESCAPE = re.compile(r"(\\+)u[dD]([89a-fA-F])[0-9a-fA-F]{2}")


@contextmanager
def gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _NonStandardConstant(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonStandardConstant(name)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


_PLAIN_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # stateless: shared


def read_text(path: Path, display: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{display}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{display}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{display}: cannot read: {exc.strerror or exc}") from None


def read_json(path: Path, display: str, object_hook: Callable[[dict], Any] | None = None) -> Any:
    """Parse ``path`` strictly; ``display`` names the file in messages (relative to the root)."""
    return parse_json(read_text(path, display), display, object_hook)


def parse_json(text: str, display: str, object_hook: Callable[[dict], Any] | None = None,
               line: int | None = None) -> Any:
    """Parse ``text`` strictly; ``line``: its line number when it is one line of a JSON Lines
    file (messages then give the file's line numbers)."""
    first = line or 1
    _reject_lone_surrogates(text, display, first)
    decoder = (_PLAIN_DECODER if object_hook is None else
               json.JSONDecoder(object_hook=object_hook, parse_constant=_reject_constant))
    with gc_paused():
        try:
            return decoder.decode(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{display}: malformed JSON at line {exc.lineno + first - 1}, "
                            f"column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            # json's decoder recurses once per nesting level; no annotation file nests
            # more than a few levels, so this is a damaged or hostile file
            at = f" at line {line}" if line else ""
            raise DataError(f"{display}: malformed JSON{at}: arrays or objects nested deeper "
                            "than Python's recursion limit") from None
        except _NonStandardConstant as exc:
            match = _CONSTANT.search(text)
            row, col = _line_col(text, match.start()) if match else (0, 0)
            raise DataError(
                f"{display}: malformed JSON at line {row and row + first - 1}, column {col}: "
                f"{exc} is not valid JSON (write null or a number)"
            ) from None


def read_json_lines(path: Path, display: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSON Lines file, each parsed as
    strictly as :func:`read_json` parses a file. One line at a time: a file of millions of
    records never sits in memory as text."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; opening errors get their message)
    except FileNotFoundError:
        raise DataError(f"{display}: file not found") from None
    except OSError as exc:
        raise DataError(f"{display}: cannot read: {exc.strerror or exc}") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{display}: line {number} is not UTF-8 text (bad byte at "
                                f"column {exc.start + 1})") from None
            if text.strip():
                yield number, parse_json(text.rstrip("\r\n"), display, line=number)


def _lone_surrogate(text: str) -> int | None:
    """Where the first surrogate escape that is not half of a pair starts, or None."""
    pending: tuple[int, int] | None = None  # a high half's escape, waiting for its low half
    for match in _SURROGATE_ESCAPE.finditer(text):
        if len(match.group(1)) % 2 == 0:
            continue  # "\\ud800" is a backslash and the text "ud800"
        start = match.end() - 6
        high = match.group(2) in "89abAB"
        if pending is not None:
            if high or start != pending[1]:
                return pending[0]
            pending = None
        elif high:
            pending = (start, match.end())
        else:
            return start
    return None if pending is None else pending[0]


def _reject_lone_surrogates(text: str, display: str, first_line: int = 1) -> None:
    if "\\ud" not in text and "\\uD" not in text:  # the common case: one fast scan each
        return
    position = _lone_surrogate(text)
    if position is not None:
        line, col = _line_col(text, position)
        raise DataError(f"{display}: malformed JSON at line {line + first_line - 1}, column "
                        f"{col}: {text[position:position + 6]} is half a surrogate pair, not a "
                        "character")


def expect_object(value: Any, display: str, where: str = "the top level") -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{display}: {where} is {_json_type(value)}, expected an object")
    return value


def expect_list(value: Any, display: str, where: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{display}: {where} is {_json_type(value)}, expected a list")
    return value


def get_list(top: dict, key: str, display: str, *, required: bool = True) -> list:
    if key not in top:
        if required:
            raise DataError(f"{display}: lacks required top-level key {key!r}")
        return []
    return expect_list(top[key], display, repr(key))


def require_keys(item: Any, keys: Iterable[str], display: str, where: str) -> dict:
    """``where`` is like ``"annotations[12]"``; raises naming the first missing key."""
    expect_object(item, display, where)
    for key in keys:
        if key not in item:
            raise DataError(f"{display}: {where} lacks required key {key!r}")
    return item


def compact_records(items: list, keys: Sequence[str], display: str, section: str) -> list[tuple]:
    """Check that every item of ``items`` was compacted by the object hook into a tuple.

    An item the hook left as a dict lacked one of ``keys``; raise naming it.
    """
    for index, item in enumerate(items):
        if type(item) is not tuple:
            require_keys(item, keys, display, f"{section}[{index}]")
            # all keys present but not compacted: the hook did not recognise the record
            raise DataError(f"{display}: {section}[{index}] is not a valid record")
        if len(item) != len(keys):  # compacted as a record of another kind
            raise DataError(f"{display}: {section}[{index}] is not a valid record (it has "
                            f"the keys of another kind of record)")
    return items


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def karpathy_sentences(entry: dict, i: int, display: str, image_id: int, cap_ids: list,
                       cap_images: list, cap_texts: list) -> None:
    """Append the captions of Karpathy image entry ``i`` (``sentences[]``: sentid, raw).

    Sentences arrive as tuples when the fast reader already picked (sentid, raw) out.
    """
    sentences = entry["sentences"]
    if not isinstance(sentences, list):
        raise DataError(f"{display}: images[{i}] key 'sentences' is not a list")
    for j, sentence in enumerate(sentences):
        if type(sentence) is not tuple:
            require_keys(sentence, ("raw", "sentid"), display, f"images[{i}].sentences[{j}]")
        cap_ids.append(sentence[0])
        cap_images.append(image_id)
        cap_texts.append(sentence[1])


def karpathy_hook(d: dict):
    """``object_hook`` for Karpathy split files: sentences shrink to (sentid, raw) while
    parsing (their ``tokens`` are never used); a sentence missing a key stays a dict, so
    :func:`karpathy_sentences` can report it."""
    if "raw" in d:
        try:
            return (d["sentid"], d["raw"])
        except KeyError:
            return d
    return d
