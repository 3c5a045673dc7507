"""A text knowledge base: passages from a BEIR ``corpus.jsonl``, a ``corpus.parquet``, or a
directory written by ``datasets.Dataset.save_to_disk`` (``format = "hf"``; found on its own
when ``state.json`` / ``dataset_info.json`` is at the root).

A passage: ``_id`` (Parquet and saved datasets may call it ``id``), ``title`` (optional),
``text``, and optionally ``image`` (a path under the root) and ``entity_id``. Every passage
is in split ``corpus``. The images of passages, if any, form the ``images`` table (image id:
the image's position in first-seen order); a corpus without any has no ``images`` kind.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, get_args

import numpy as np

from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, ConfigError, DataError

from ._base import LoadedDataset, Parsed, open_dataset, resolve_root
from ._columns import shown
from ._json import expect_object, read_json_lines, require_keys
from ._knowledge import id_field, text_field
from ._options import PassagesFormat
from ._paths import image_paths, unsafe_reason
from ._schemas import make_table

NAME = "passages"
LOADER_VERSION = "1"
SPLIT = "corpus"
JSONL = "corpus.jsonl"
PARQUET = "corpus.parquet"
SAVED_MARKERS = ("state.json", "dataset_info.json")  # what save_to_disk writes beside its data
FORMATS = get_args(PassagesFormat)
OPTIONAL_COLUMNS = ("title", "image", "entity_id")  # "" where absent or null


def create(root: str | Path | None = None, *, format: str = "auto", check_images: bool = True,
           on_bad_image: str = "fail",
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedDataset:
    root = resolve_root(NAME, root)
    format = detect_format(root, format)
    if format == "hf":
        sources = [root / m for m in SAVED_MARKERS] + sorted(root.glob("*.arrow"))
    else:
        sources = [root / (JSONL if format == "jsonl" else PARQUET)]
    # images may sit anywhere under the root: watch it and its folders
    folders = [root, *(p for p in root.iterdir() if p.is_dir())]
    return open_dataset(NAME, LOADER_VERSION, root, sources, {"format": format},
                        partial(_parse, root, format), image_dirs=folders,
                        check_images=check_images, on_bad_image=on_bad_image,
                        max_image_pixels=max_image_pixels)


def detect_format(root: Path, format: str) -> str:
    if format not in FORMATS:
        raise ConfigError(f"passages: format must be one of {', '.join(FORMATS)}, got "
                          f"{format!r}")
    files = {"jsonl": (root / JSONL).is_file(), "parquet": (root / PARQUET).is_file(),
             "hf": any((root / m).is_file() for m in SAVED_MARKERS)}
    if format != "auto":
        if not files[format]:
            needs = {"jsonl": JSONL, "parquet": PARQUET,
                     "hf": f"a dataset saved by datasets' save_to_disk ({SAVED_MARKERS[0]})"}
            raise DataError(f"passages ({root}): format {format!r} needs {needs[format]} at "
                            f"the root{_dataset_dict_hint(root)}")
        return format
    found = next((name for name, present in files.items() if present), None)
    if found:
        return found
    raise DataError(f"passages ({root}): none of {JSONL}, {PARQUET} or a dataset saved by "
                    f"datasets' save_to_disk found at the root{_dataset_dict_hint(root)}")


def _dataset_dict_hint(root: Path) -> str:
    if (root / "dataset_dict.json").is_file():
        return ("; dataset_dict.json there means a saved DatasetDict: give the folder of one "
                "of its splits as the root")
    return ""


def _parse(root: Path, format: str) -> Parsed:
    if format == "jsonl":
        columns, lines = _read_jsonl(root)
        return _tables(root, columns, JSONL, lambda row: f"line {lines[row]}")
    table, display = (_read_parquet(root) if format == "parquet" else _read_saved(root))
    return _tables(root, _arrow_columns(table, display), display, lambda row: f"row {row}")


def _optional_text(record: dict, key: str, display: str, where: str) -> str:
    return "" if record.get(key) is None else text_field(record, key, display, where)


def _read_jsonl(root: Path) -> tuple[dict[str, list[str]], list[int]]:
    columns: dict[str, list[str]] = {"passage_id": [], "text": [],
                                     **{name: [] for name in OPTIONAL_COLUMNS}}
    lines = []
    for number, record in read_json_lines(root / JSONL, JSONL):
        where = f"line {number}"
        record = expect_object(record, JSONL, where)
        require_keys(record, ("_id", "text"), JSONL, where)
        columns["passage_id"].append(id_field(record, "_id", JSONL, where))
        columns["text"].append(text_field(record, "text", JSONL, where))
        for name in OPTIONAL_COLUMNS:
            columns[name].append(_optional_text(record, name, JSONL, where))
        lines.append(number)
    return columns, lines


def _read_parquet(root: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(root / PARQUET, memory_map=True), PARQUET
    except Exception as exc:  # ArrowInvalid, OSError...: the file is not a Parquet table
        raise DataError(f"{PARQUET}: not a readable Parquet file: {_first_line(exc)}") from None


def _read_saved(root: Path):
    from datasets import Dataset, load_from_disk

    shards = sorted(p.name for p in root.glob("*.arrow"))
    display = shards[0] if len(shards) == 1 else "the saved dataset's .arrow files"
    try:
        saved = load_from_disk(str(root))
    except Exception as exc:  # missing shards, damaged state.json, ...
        raise DataError(f"{display}: cannot be loaded: {type(exc).__name__}: "
                        f"{_first_line(exc)}") from None
    if not isinstance(saved, Dataset):
        raise DataError(f"{display}: holds a {type(saved).__name__}, expected one Dataset")
    return saved.with_format("arrow")[:], display


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _arrow_columns(table, display: str) -> dict[str, Any]:
    """The passages columns of a Parquet or saved table: strings, "" where an optional
    column is absent or null; a missing or null id or text is an error naming the row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    id_column = next((c for c in ("_id", "id") if c in names), None)
    for required, found in (("_id", id_column), ("text", "text" if "text" in names else None)):
        if found is None:
            raise DataError(f"{display}: has no {required!r} column (it has "
                            f"{', '.join(map(repr, names))})")
    columns: dict[str, Any] = {}
    sources = {"passage_id": id_column, "text": "text", **{c: c for c in OPTIONAL_COLUMNS}}
    for name, source in sources.items():
        if source not in names:
            columns[name] = pa.repeat(pa.scalar("", pa.string()), table.num_rows)
            continue
        column = table[source]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_null(column.type)):
            raise DataError(f"{display}: column {source!r} holds {column.type}, expected "
                            "strings")
        column = column.cast(pa.string())
        if name in ("passage_id", "text"):
            empty = pc.is_null(column)
            if name == "passage_id":  # an id of only spaces is no id either
                empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(column), ""))
            rows = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
            if len(rows):
                raise DataError(f"{display}: row {int(rows[0])} has no {source!r}")
        columns[name] = column.fill_null("")
    return columns


def _unique_ids(ids, display: str, name: Callable[[int], str]) -> None:
    import pandas as pd

    ids = pd.Series(ids.to_pandas() if hasattr(ids, "to_pandas") else ids)
    repeated = np.flatnonzero(ids.duplicated().to_numpy())
    if len(repeated):
        row = int(repeated[0])
        first = int(np.flatnonzero((ids == ids[row]).to_numpy())[0])
        raise DataError(f"{display}: {name(row)} has _id {shown(ids[row])}, as has "
                        f"{name(first)}; passage ids must be unique")


def _tables(root: Path, columns: dict[str, Any], display: str,
            name: Callable[[int], str]) -> Parsed:
    """``name(row)`` says which record a row is in messages."""
    import pyarrow as pa
    import pyarrow.compute as pc

    _unique_ids(columns["passage_id"], display, name)
    count = len(columns["passage_id"])
    images = columns.pop("image")
    if not isinstance(images, list):  # an Arrow column: read it only when it names images
        images = images.to_pylist() if pc.any(pc.not_equal(images, "")).as_py() else []
    image_ids: dict[str, int] = {}  # path under the root -> image id, in first-seen order
    keep, rejected = np.ones(count, dtype=bool), []
    for row, relative in enumerate(images):
        if not relative:
            continue
        reason = unsafe_reason(relative)
        if reason:
            keep[row] = False
            rejected.append(f"{name(row)} image {relative!r} {reason}")
        else:
            image_ids.setdefault(relative, len(image_ids))
    absolute = dict(zip(image_ids, image_paths(root, list(image_ids)), strict=True))
    passages = make_table("passages", {
        **columns,
        "image_path": ([absolute.get(relative, "") for relative in images] if image_ids
                       else pa.repeat(pa.scalar("", pa.string()), count)),
        "split": pa.repeat(pa.scalar(SPLIT, pa.string()), count),
    })
    problems = []
    if rejected:
        passages = passages.filter(pa.array(keep))
        problems.append(f"{display}: {len(rejected)} passages with unsafe image paths "
                        f"rejected, e.g. {rejected[0]}")
    tables = {"passages": passages}
    if image_ids:
        ids = np.arange(len(image_ids), dtype=np.int64)
        none = np.full(len(ids), -1, np.int64)
        tables["images"] = make_table("images", {
            "image_id": ids, "image_path": list(absolute.values()),
            "split": [SPLIT] * len(ids), "width": none.astype(np.int32),
            "height": none.astype(np.int32), "coco_id": none, "flickr_id": none,
        })
    return Parsed(tables, problems, [])
