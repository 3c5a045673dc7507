"""What every dataset loader shares: root lookup, the cache round trip, image checks, tables.

A loader supplies ``parse() -> Parsed`` (one Arrow table per record kind, with a ``split``
column; an ``images`` table unless no record has an image, as in a text knowledge base) and
the list of its source files; :func:`load` fingerprints the files, reuses a
cached entry when there is one, and otherwise parses, checks the images, splits the tables
and writes the entry. The returned :class:`LoadedDataset` serves memory-mapped tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.api import DATA_ENV, DEFAULT_MAX_IMAGE_PIXELS, ConfigError, DataError, data_root

from . import _arrow_cache, _images
from ._json import gc_paused

log = logging.getLogger(__name__)

BASE_VERSION = "2"  # bump when the cached layout or a shared rule changes
SPLIT_ORDER = ("train", "restval", "val", "test", "all")


@dataclass
class Parsed:
    tables: dict[str, Any]  # kind -> pyarrow.Table with a "split" column
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. COCO categories
    bad_images: list[tuple[str, str]] = field(default_factory=list)  # (path in root, why)


def resolve_root(name: str, root: str | Path | None) -> Path:
    if root is None or root == "":
        root = data_root(name)
        if root is None:
            raise ConfigError(
                f"dataset {name!r}: no data directory; pass root=DIR (a suite's "
                f"[data.{name}] root) or set ${DATA_ENV} so that ${DATA_ENV}/{name} is used"
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"dataset {name!r}: data directory {path} does not exist or is not a "
                        "directory")
    return path.resolve()


def ordered_splits(splits) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in splits]
    return known + sorted(set(splits) - set(known))


def load(name: str, root: Path, version: str, sources: list[Path], options: dict[str, Any],
         parse: Callable[[], Parsed], *, check_images: bool, on_bad_image: str,
         image_dirs: list[Path] = (),
         max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[dict, Path, str]:
    """Return ``(meta, cache directory, fingerprint)``, parsing only on a cache miss."""
    _images.check_option(on_bad_image)
    _images.check_limit(max_image_pixels)
    options = dict(options, check_images=bool(check_images), on_bad_image=on_bad_image,
                   max_image_pixels=max_image_pixels)
    # a folder's mtime changes when files are added or removed in it, so with image checks
    # on, adding or deleting images invalidates the entry too
    watched = list(sources) + (list(image_dirs) if check_images else [])
    key = _arrow_cache.fingerprint(name, f"{BASE_VERSION}.{version}", root, watched, options)
    directory = _arrow_cache.entry_dir(name, key)
    meta = _arrow_cache.load_meta(directory)
    if meta is None:
        # parsing builds millions of small objects and frees them by reference counting;
        # the cyclic collector would only rescan them again and again (most of a bare
        # json.load's time on a big file), so it is paused for the whole parse
        with gc_paused():
            parsed = parse()
            if check_images:
                _apply_image_checks(parsed, name, root, on_bad_image, sources,
                                    max_image_pixels)
            tables, meta = _split_tables(name, root, parsed)
            del parsed
            _arrow_cache.write_entry(directory, tables, meta)
        log.info("%s: parsed %s and cached it in %s", name, root, directory)
    for problem in meta["problems"]:
        log.warning("%s: %s", name, problem)
    return meta, directory, key


def _apply_image_checks(parsed: Parsed, name: str, root: Path, on_bad_image: str,
                        sources: list[Path], max_image_pixels: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if "images" not in parsed.tables:  # a text knowledge base without any image
        return
    images = parsed.tables["images"]
    paths = images.column("image_path").to_pylist()
    check = _images.check_images(paths, max_image_pixels)
    if check.bad and on_bad_image == "fail":
        raise _images.bad_images_error(name, root, paths, check.bad, sources)
    # fill sizes the annotation files do not give (Karpathy and Flickr30k files have none)
    width = images.column("width").to_numpy().copy()
    height = images.column("height").to_numpy().copy()
    for row, size in enumerate(check.sizes):
        if size is not None and width[row] < 0:
            width[row], height[row] = size
    images = images.set_column(images.schema.get_field_index("width"), "width",
                               pa.array(width, pa.int32()))
    images = images.set_column(images.schema.get_field_index("height"), "height",
                               pa.array(height, pa.int32()))
    if check.bad:
        bad_rows = np.array([row for row, _ in check.bad])
        bad_ids = pa.array(images.column("image_id").to_numpy()[bad_rows])
        parsed.problems.append(
            f"{_images.describe_bad(name, root, paths, check.bad)} (skipped with their records)")
        parsed.bad_images = [(_images.relative(paths[row], root), why) for row, why in check.bad]
        bad_paths = pa.array([paths[row] for row, _ in check.bad], pa.string())
        for kind, table in parsed.tables.items():
            # records name their image by id, or (passages) by path
            if kind == "images":
                continue
            shows_a_bad_image = (pc.is_in(table["image_id"], bad_ids)
                                 if "image_id" in table.column_names
                                 else pc.is_in(table["image_path"], bad_paths))
            parsed.tables[kind] = table.filter(pc.invert(shows_a_bad_image))
        keep = np.ones(images.num_rows, dtype=bool)
        keep[bad_rows] = False
        images = images.filter(pa.array(keep))
    parsed.tables["images"] = images


def _split_tables(name: str, root: Path, parsed: Parsed) -> tuple[dict, dict]:
    import pyarrow.compute as pc

    if not any(table.num_rows for table in parsed.tables.values()):
        what = "images" if "images" in parsed.tables else "records"
        raise DataError(f"{name} ({root}): no usable {what}"
                        + (f" ({'; '.join(parsed.problems)})" if parsed.problems else ""))
    tables: dict[tuple[str, str], Any] = {}
    counts: dict[str, dict[str, int]] = {}
    for kind, table in parsed.tables.items():
        counts[kind] = {}
        split_values = table.column("split")
        for split in ordered_splits(pc.unique(split_values).to_pylist()):
            part = table.filter(pc.equal(split_values, split))
            tables[(kind, split)] = part
            counts[kind][split] = part.num_rows
    meta = {
        "dataset": name,
        "root": str(root),
        "kinds": list(parsed.tables),
        # every record hangs off an image of its split, except passages without one
        "splits": ordered_splits({split for per_split in counts.values() for split in per_split}),
        "counts": counts,
        "problems": parsed.problems,
        "notes": parsed.notes,
        "extra": parsed.extra,
        "bad_images": [list(bad) for bad in parsed.bad_images],
    }
    return tables, meta


class LoadedDataset:
    """A dataset whose tables are parsed and cached: implements ``contracts.Dataset``."""

    def __init__(self, name: str, root: Path, meta: dict, directory: Path, key: str, *,
                 skips_bad_images: bool = False,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.name = name
        self.root = root
        # on_bad_image = "skip": images that fail to decode are left out of the tasks too
        self.skips_bad_images = skips_bad_images
        # the harness decodes the images under the same limit as the header check
        self.max_image_pixels = max_image_pixels
        # (path relative to the root, why) of the images the header check skipped
        self.bad_images: list[tuple[str, str]] = [(p, why) for p, why in
                                                  meta.get("bad_images", [])]
        self.kinds: tuple[str, ...] = tuple(meta["kinds"])
        self.problems: list[str] = list(meta["problems"])
        self.notes: list[str] = list(meta["notes"])
        self._meta = meta
        self._directory = directory
        self._key = key
        self._open: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.root} splits={self.splits()}>"

    def splits(self) -> list[str]:
        return list(self._meta["splits"])

    def fingerprint(self) -> str:
        return self._key

    def count(self, kind: str, split: str | None = None) -> int:
        per_split = self._meta["counts"].get(kind, {})
        return per_split.get(split, 0) if split else sum(per_split.values())

    def summary(self) -> dict:
        """``{"splits": [...], "counts": {kind: {split: rows}}, ...}`` for ``data check``."""
        return {
            "splits": self.splits(),
            "counts": {kind: {s: v[s] for s in ordered_splits(v)}
                       for kind, v in self._meta["counts"].items()},
            "categories": len(self._meta["extra"].get("categories", [])),
        }

    def table(self, kind: str, split: str):
        if kind not in self.kinds:
            raise DataError(f"{self.name} ({self.root}): has no {kind!r} records; it has "
                            f"{', '.join(self.kinds)}")
        if not self.count(kind, split):
            having = ordered_splits([s for s, n in self._meta["counts"][kind].items() if n])
            raise DataError(
                f"{self.name} ({self.root}): split {split!r} has no {kind}; splits with "
                f"{kind}: {', '.join(having) or '(none)'}")
        if (kind, split) not in self._open:
            path = _arrow_cache.table_file(self._directory, kind, split)
            if not path.is_file():
                raise DataError(f"{self.name}: cached table {path} disappeared; create the "
                                "dataset again to re-parse it")
            self._open[(kind, split)] = _arrow_cache.open_table(path)
        return self._open[(kind, split)]


def open_dataset(name: str, version: str, root: Path, sources: list[Path],
                 options: dict[str, Any], parse: Callable[[], Parsed], *,
                 image_dirs: list[Path], check_images: bool, on_bad_image: str,
                 max_image_pixels: int, cls: type[LoadedDataset] = LoadedDataset
                 ) -> LoadedDataset:
    """Parse (or reuse the cached parse of) ``sources`` (:func:`load`) and serve the tables
    as ``cls``, the loader's :class:`LoadedDataset`."""
    meta, directory, key = load(name, root, version, sources, options, parse,
                                check_images=check_images, on_bad_image=on_bad_image,
                                image_dirs=image_dirs, max_image_pixels=max_image_pixels)
    return cls(name, root, meta, directory, key, skips_bad_images=on_bad_image == "skip",
               max_image_pixels=max_image_pixels)
