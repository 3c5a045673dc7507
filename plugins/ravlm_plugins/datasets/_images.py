"""Cheap image-file checks: the file exists, its header decodes and announces no more
pixels than ``max_image_pixels``; pixels are never loaded.

``PIL.Image.open`` reads only the header, and ``verify()`` checks what the format allows
without decoding the image, so checking every image of a dataset stays affordable. The
size limit is the harness's own (``open_image`` of the plugin API, the one encoding applies),
so an image a run would refuse is refused here, before anything is decoded. A file whose
pixel data is truncated passes: ``ravlm-bench data check`` (unless --fast) decodes every
image, and encoding can skip the ones that fail.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import get_args

from ravlm_bench.api import (
    ConfigError,
    DataError,
    ImageTooLarge,
    open_image,
    pillow_bomb_warnings_off,
)

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


def check_limit(max_image_pixels) -> int:
    if (isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int)
            or max_image_pixels <= 0):
        raise ConfigError(f"max_image_pixels={max_image_pixels!r}: expected a positive "
                          "number of pixels")
    return max_image_pixels


def _check_one(path: str, max_pixels: int) -> tuple[str | None, tuple[int, int] | None]:
    try:
        with open_image(path, max_pixels) as image:
            size = image.size
            image.verify()
        return None, size
    except FileNotFoundError:
        return "missing", None
    except ImageTooLarge as exc:
        return str(exc), None
    except Exception as exc:
        # a damaged or hostile file may raise anything from the decoder: OSError,
        # SyntaxError, ValueError, struct.error, DecompressionBombError...
        return f"corrupt: {type(exc).__name__}", None


def check_images(paths: list[str], max_pixels: int) -> ImageCheck:
    # I/O bound: a few threads overlap the file opens on network or spinning disks
    workers = 8 if len(paths) > 2000 else 1
    check = partial(_check_one, max_pixels=max_pixels)
    with pillow_bomb_warnings_off():  # process-wide, so entered once around the threads
        if workers == 1:
            results = [check(p) for p in paths]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(check, paths, chunksize=256))
    bad = [(row, reason) for row, (reason, _) in enumerate(results) if reason]
    return ImageCheck(bad=bad, sizes=[size for _, size in results])


def relative(path: str, root) -> str:
    import os

    return os.path.relpath(path, root)


def describe_bad(dataset: str, root, paths: list[str], bad: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"{relative(paths[row], root)} ({reason})"
                      for row, reason in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    what = ("missing, corrupt or too large" if any(r.startswith("too large") for _, r in bad)
            else "missing or corrupt")
    return f"{len(bad)} image files are {what}: {shown}{more}"


def bad_images_error(dataset: str, root, paths: list[str], bad: list[tuple[int, str]],
                     sources: list = ()) -> DataError:
    import os

    listed = (f" (listed in {', '.join(os.path.relpath(s, root) for s in sources)})"
              if sources else "")
    return DataError(
        f"{dataset} ({root}): {describe_bad(dataset, root, paths, bad)}{listed}; pass "
        "on_bad_image='skip' (data check: --on-bad-image skip) to drop them"
    )
