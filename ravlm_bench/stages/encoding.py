"""Running encoders over a dataset's images and texts, the way the runner needs it.

Image decoding (and, for encoders that expose ``preprocess``, resizing and normalising)
runs in DataLoader worker processes so that it overlaps the model. Every batch the encoder
returns is checked against the contract; a violation raises ``ContractViolation`` for the
caller to wrap in a ``ComponentError`` naming the plugin.

An image that does not decode, or whose header announces more pixels than the limit
(``max_image_pixels``, checked before any pixel is decoded), is a one-line ``DataError``
naming the file; the datasets' own header checks use the same :func:`open_image`. A dataset
that skips bad images has them dropped before encoding (:mod:`ravlm_bench.stages.bad_images`,
which finds them with :func:`find_undecodable`: the same decoding alone, on every core, as
``ravlm-bench data check`` runs it).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ravlm_bench.foundation.errors import DataError
from ravlm_bench.plugin_host.contracts import validate_vectors

if TYPE_CHECKING:
    from PIL import Image
    from torch.utils.data import Dataset

log = logging.getLogger(__name__)

# One image as a decoding worker hands it over: (index, PIL image or preprocessed tensor, or
# None on failure; why it failed, or None)
DecodedImage = tuple[int, Any, str | None]

# Pixels an image may have unless its dataset sets max_image_pixels: far above any COCO,
# Flickr30k or Visual Genome image (about 1,000 x 1,000 at most), far below what decoding
# one image could take of a machine's memory (3 bytes a pixel: 150 MB)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


class ImageTooLarge(ValueError):
    """An image whose header announces more pixels than the limit: refused undecoded."""


@contextmanager
def pillow_bomb_warnings_off() -> Iterator[None]:
    """Within this block Pillow's ``DecompressionBombWarning`` is not shown: the harness's
    own limit (:func:`open_image`) decides instead, so no raw library warning reaches the
    user. Warning filters are process-wide: enter it once around a pool of threads, never in
    each thread."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_image(path: str, max_pixels: int) -> Image.Image:
    """The image file opened with only its header read, or :class:`ImageTooLarge` when the
    header announces more than ``max_pixels`` pixels (closed again, nothing decoded)."""
    from PIL import Image

    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        # over Pillow's own hard limit (twice Image.MAX_IMAGE_PIXELS), refused by open()
        # itself before the size can be read
        hard = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        over = (f"max_image_pixels {max_pixels:,}" if max_pixels < hard
                else f"Pillow's limit of {hard:,} pixels")
        raise ImageTooLarge(f"too large: the header announces more than {over}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"too large: {width} x {height} = {width * height:,} pixels, over "
                            f"max_image_pixels {max_pixels:,}")
    return image


class ImageFiles:
    """A map-style dataset of image files: each item is (index, image or tensor, error)."""

    def __init__(self, paths: list[str], preprocess: Callable[[Any], Any] | None = None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.paths = paths
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> DecodedImage:
        # a preprocess that says what size it resizes to lets a large JPEG decode smaller
        decode_size = getattr(self.preprocess, "decode_size", None)
        image, error = decode_image(self.paths[index], self.max_pixels, decode_size)
        if error is not None or self.preprocess is None:
            return index, image, error
        return index, self.preprocess(image), None


def decode_image(path: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 decode_size: Callable[[int, int], tuple[int, int]] | None = None,
                 ) -> tuple[Image.Image | None, str | None]:
    """``(RGB image, None)``, or ``(None, why)`` when the file is missing, its header
    announces more than ``max_pixels`` pixels, or its pixels do not decode: ``load()``
    decodes them all, so a truncated file fails here, not in the model.

    ``decode_size`` maps the header's (width, height) to the smallest size the caller needs:
    a JPEG is then decoded DCT-scaled (``Image.draft``: by 1/2, 1/4 or 1/8, the largest
    reduction still at least that size; the whole scan is still read, so a truncated file
    still fails). An image under twice that size, or in another format, decodes in full.
    The pixel limit applies to the header's size.

    Errors are returned as text: a DataLoader re-raises worker exceptions with a multi-line
    traceback, and the user needs one line naming the file.
    """
    try:
        with pillow_bomb_warnings_off(), open_image(path, max_pixels) as image:
            if decode_size is not None:
                image.draft("RGB", decode_size(*image.size))  # None for all but JPEG
            image.load()
            return image.convert("RGB"), None
    except FileNotFoundError:
        return None, "file not found"
    except ImageTooLarge as exc:
        return None, str(exc)
    except Exception as exc:
        # besides OSError and UnidentifiedImageError, PIL's decoders raise SyntaxError,
        # ValueError, struct.error, DecompressionBombError... on damaged or hostile files
        return None, f"cannot decode ({type(exc).__name__}: {exc})"


def _collate(items: list[DecodedImage]) -> list[DecodedImage]:
    return items  # stacking happens in the main process, after checking for errors


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


@contextmanager
def one_process_threads() -> Iterator[None]:
    """Within the block torch runs as many intra-op threads as one process here would
    (:func:`available_cores`), then as many as before. torchrun gives each rank one thread
    (``OMP_NUM_THREADS=1``), and a convolution's last bits depend on the thread count: a rank
    encoding at one process's count gives that process's features, bit for bit, at the cost
    of ranks sharing the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, available_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def default_num_workers() -> int:
    """Decoding workers: half the cores, leaving the rest to the model (at least one)."""
    return max(1, min(8, available_cores() // 2))


def _reject_truncated_files() -> None:
    # A library or plugin may have set LOAD_TRUNCATED_IMAGES in the parent to decode partial
    # files as grey; forked workers inherit it, and finding those files is the point here.
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False


def _decode_error(path: str, max_pixels: int) -> str | None:
    return decode_image(path, max_pixels)[1]


def find_undecodable(paths: list[str], *, workers: int | None = None, progress: bool = False,
                     max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> dict[int, str]:
    """Decode every image's pixels and return ``{index: why}`` for those that fail (or are
    over ``max_pixels``, refused from the header).

    This is the decoding ``encode_images`` does, so it finds exactly the files a run would
    fail on. Decoding is CPU bound: it runs in a process pool, one process per core unless
    ``workers`` says otherwise.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    if not paths:
        return {}
    workers = max(1, min(available_cores() if workers is None else workers, len(paths)))
    # chunks amortise the round trips; several per worker keep the pool busy to the end
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    with ProcessPoolExecutor(workers, initializer=_reject_truncated_files) as pool:
        errors = pool.map(partial(_decode_error, max_pixels=max_pixels), paths, chunksize=chunk)
        bar = tqdm(errors, total=len(paths), unit="img", desc="decoding images",
                   disable=not progress, leave=False)
        return {index: error for index, error in enumerate(bar) if error is not None}


# The batches the harness hands encoders; under torchrun a rank's shard is whole batches
# (features.block_shard), so each item meets the same batch as in one process
IMAGE_BATCH = 64
TEXT_BATCH = 256


def encode_images(encoder: Any, image_paths: list[str], *, batch_size: int = IMAGE_BATCH,
                  num_workers: int | None = None, progress: bool = True,
                  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encode image files into float32 features (n, encoder.dim), in order.

    :raises DataError: an image file is missing, over ``max_pixels`` or cannot be decoded
        (naming the file).
    :raises ContractViolation: the encoder returned the wrong shape, dtype or NaN.
    """
    dim = int(encoder.dim)
    out = np.zeros((len(image_paths), dim), np.float32)
    for items in _decoded_batches(encoder, image_paths, batch_size, num_workers, progress,
                                  max_pixels):
        for index, _, error in items:
            if error is not None:
                raise DataError(f"image {image_paths[index]}: {error}")
        rows = [index for index, _, _ in items]
        out[rows] = _encode_batch(encoder, [value for _, value, _ in items], dim)
    return out


def _decoded_batches(encoder: Any, image_paths: list[str], batch_size: int,
                     num_workers: int | None, progress: bool,
                     max_pixels: int) -> Iterator[list[DecodedImage]]:
    """Batches of ``(index, image or tensor, error)``, decoded in DataLoader workers."""
    if not image_paths:
        return
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    preprocess = getattr(encoder, "preprocess", None) if _takes_tensors(encoder) else None
    workers = default_num_workers() if num_workers is None else int(num_workers)
    # DataLoader reads any map-style dataset (__len__, __getitem__); its stub names the class
    files = cast("Dataset[DecodedImage]", ImageFiles(list(image_paths), preprocess,
                                                      max_pixels))
    loader: DataLoader[DecodedImage] = DataLoader(
        files,
        batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        prefetch_factor=4 if workers else None, persistent_workers=False,
    )
    with tqdm(total=len(image_paths), unit="img", desc="encoding images",
              disable=not progress, leave=False) as bar:
        for items in loader:
            yield items
            bar.update(len(items))


def _takes_tensors(encoder: Any) -> bool:
    return callable(getattr(encoder, "preprocess", None)) and callable(
        getattr(encoder, "encode_batch", None))


def _encode_batch(encoder: Any, payload: list[Any], dim: int) -> np.ndarray:
    import torch

    if _takes_tensors(encoder):
        features = encoder.encode_batch(torch.stack(payload))
    else:
        features = encoder.encode(payload)
    return validate_vectors(features, len(payload), dim, what="encode")


def encode_texts(encoder: Any, texts: list[str], *, batch_size: int = TEXT_BATCH,
                 progress: bool = True) -> np.ndarray:
    """Encode texts into float32 features (n, encoder.dim), in order, checking each batch."""
    from tqdm.auto import tqdm

    dim = int(encoder.dim)
    out = np.empty((len(texts), dim), np.float32)
    with tqdm(total=len(texts), unit="text", desc="encoding texts", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            features = validate_vectors(encoder.encode(chunk), len(chunk), dim, what="encode")
            out[start:start + len(chunk)] = features
            bar.update(len(chunk))
    return out
