"""Cheap image-file checks: the file exists and its header decodes; pixels are never loaded.

``PIL.Image.open`` reads only the header, and ``verify()`` checks what the format allows
without decoding the image, so checking every image of a dataset stays affordable. A file
whose pixel data is truncated passes: ``ravlm-bench data check`` (unless --fast) decodes
every image, and encoding can skip the ones that fail.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import get_args

from ravlm_bench.api import ConfigError, DataError

from ._options import OnBadImage

log = logging.getLogger(__name__)

ON_BAD_IMAGE = get_args(OnBadImage)
_SHOWN = 5  # bad files named in a message before "and N more"


@dataclass
class ImageCheck:
    bad: list[tuple[int, str]]  # (row, reason)
    sizes: list[tuple[int, int] | None]  # (width, height) per row; None when unreadable


def check_option(on_bad_image: str) -> str:
    if on_bad_image not in ON_BAD_IMAGE:
        raise ConfigError(f"on_bad_image={on_bad_image!r}: expected one of "
                          f"{', '.join(ON_BAD_IMAGE)}")
    return on_bad_image


def _check_one(path: str) -> tuple[str | None, tuple[int, int] | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
        return None, size
    except FileNotFoundError:
        return "missing", None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL reports truncated or garbled headers as OSError / SyntaxError
        return f"corrupt: {type(exc).__name__}", None


def check_images(paths: list[str]) -> ImageCheck:
    # I/O bound: a few threads overlap the file opens on network or spinning disks
    workers = 8 if len(paths) > 2000 else 1
    if workers == 1:
        results = [_check_one(p) for p in paths]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_check_one, paths, chunksize=256))
    bad = [(row, reason) for row, (reason, _) in enumerate(results) if reason]
    return ImageCheck(bad=bad, sizes=[size for _, size in results])


def describe_bad(dataset: str, root, paths: list[str], bad: list[tuple[int, str]]) -> str:
    import os

    shown = ", ".join(f"{os.path.relpath(paths[row], root)} ({reason})"
                      for row, reason in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return f"{len(bad)} image files are missing or corrupt: {shown}{more}"


def bad_images_error(dataset: str, root, paths: list[str], bad: list[tuple[int, str]],
                     sources: list = ()) -> DataError:
    import os

    listed = (f" (listed in {', '.join(os.path.relpath(s, root) for s in sources)})"
              if sources else "")
    return DataError(
        f"{dataset} ({root}): {describe_bad(dataset, root, paths, bad)}{listed}; pass "
        "on_bad_image='skip' (data check: --on-bad-image skip) to drop them"
    )
