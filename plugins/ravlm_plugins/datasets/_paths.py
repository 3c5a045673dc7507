"""Safe image path resolution: annotation files name images, never arbitrary files.

A ``file_name`` is joined under its image folder only if it is a plain relative name:
absolute paths, drive letters and ``..`` components are rejected, so an annotation file
cannot point the harness at files outside the dataset root. Symbolic links inside the
root are followed as usual (image folders are often links to a shared copy).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

_PLAIN_NAME = re.compile(r"[^/\\:\x00]+")


def is_plain_name(name: object) -> bool:
    """A bare file name (no separators, no drive): the common case, checked cheaply."""
    return type(name) is str and name not in (".", "..") and _PLAIN_NAME.fullmatch(name) is not None


_NOT_PLAIN = re.compile(r"[/\\:\x00]|^\.\.?$", re.MULTILINE)


def all_plain(names: list[str]) -> bool:
    """True when every name is a bare file name: one regex pass over all of them."""
    if not all(type(n) is str for n in names):
        return False
    joined = "\n".join(names)
    return "\n\n" not in joined and _NOT_PLAIN.search(joined) is None and bool(
        not names or (names[0] and names[-1]))


def unsafe_reason(name: object) -> str | None:
    """Why ``name`` may not be used as an image file name, or None when it is fine."""
    if is_plain_name(name):
        return None
    if not isinstance(name, str) or not name.strip():
        return "is not a file name"
    if "\x00" in name:
        return "contains a NUL byte"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (posix.is_absolute() or windows.is_absolute() or windows.drive
            or name.startswith(("/", "\\"))):
        return "is an absolute path"
    parts = set(posix.parts) | set(windows.parts)
    if ".." in parts:
        return "escapes the dataset root"
    return None


def image_paths(folder: Path, names: list[str]) -> list[str]:
    """Absolute path strings of images ``names`` (already checked with :func:`unsafe_reason`)."""
    # plain string work instead of Path objects: this runs once per image (118k for COCO
    # train2017), and is several times faster
    prefix = os.path.join(str(folder), "")
    if all_plain(names):
        return [prefix + n for n in names]
    return [prefix + n if is_plain_name(n) else os.path.normpath(prefix + n) for n in names]


def list_dir(folder: Path) -> set[str]:
    """Names in ``folder`` (empty when it does not exist): one scan instead of a stat per image."""
    try:
        with os.scandir(folder) as it:
            return {entry.name for entry in it}
    except (FileNotFoundError, NotADirectoryError):
        return set()
