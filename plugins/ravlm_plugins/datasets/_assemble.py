"""Joining records to their images: dangling references, splits, and Arrow columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._columns import first_duplicates, lookup
from ._schemas import make_table


@dataclass
class ImageIndex:
    """The images a dataset keeps, in table order, with a split code each."""

    ids: np.ndarray  # int64
    split_codes: np.ndarray  # int32 index into split_names
    split_names: list[str]
    rejected: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def rows(self, image_ids: np.ndarray) -> np.ndarray:
        return lookup(image_ids, self.ids)


def mask_records(records: dict, keep: np.ndarray) -> dict:
    if keep.all():
        return records
    out = {}
    for name, column in records.items():
        if isinstance(column, np.ndarray):
            out[name] = column[keep]
        else:
            out[name] = [v for v, k in zip(column, keep, strict=True) if k]
    return out


def drop_dangling(records: dict, known_ids: np.ndarray, display: str, what: str,
                  problems: list[str]) -> dict:
    """Drop records whose ``image_id`` is not in ``known_ids``, with one problem line."""
    image_ids = records["image_id"]
    known = lookup(image_ids, known_ids) >= 0
    if not known.all():
        missing = image_ids[~known]
        problems.append(f"{display}: {int((~known).sum())} {what} reference "
                        f"{len(np.unique(missing))} image ids not in 'images' (dropped)")
        records = mask_records(records, known)
    return records


def drop_duplicate_ids(records: dict, id_column: str, display: str, what: str,
                       problems: list[str]) -> dict:
    dup = first_duplicates(records[id_column])
    if dup.any():
        problems.append(f"{display}: {int(dup.sum())} {what} repeat an earlier id "
                        f"(first: {int(records[id_column][dup][0])}; kept the first)")
        records = mask_records(records, ~dup)
    return records


def attach_split(records: dict, index: ImageIndex) -> tuple[dict, np.ndarray]:
    """Keep records of images in ``index``; return them and their split codes."""
    rows = index.rows(records["image_id"])
    keep = rows >= 0
    records = mask_records(records, keep)
    return records, index.split_codes[rows[keep]]


def concat_records(parts: list[dict]) -> dict:
    if not parts:
        return {}
    out = {}
    for name in parts[0]:
        columns = [p[name] for p in parts]
        if isinstance(columns[0], np.ndarray):
            out[name] = np.concatenate(columns) if len(columns) > 1 else columns[0]
        else:
            out[name] = [v for c in columns for v in c]
    return out


def take_strings(names: list[str], codes: np.ndarray):
    """Arrow string column ``names[codes]`` without building a Python list per row."""
    import pyarrow as pa

    return pa.array(names, pa.string()).take(pa.array(codes, pa.int32()))


def captions_table(parts: list[tuple[dict, str]], index: ImageIndex, problems: list[str]):
    records, codes = [], []
    for part, display in parts:
        part = drop_duplicate_ids(part, "caption_id", display, "captions", problems)
        part, part_codes = attach_split(part, index)
        records.append(part)
        codes.append(part_codes)
    merged = concat_records(records)
    return make_table("captions", {
        "caption_id": merged["caption_id"], "image_id": merged["image_id"],
        "caption": merged["caption"],
        "split": take_strings(index.split_names, np.concatenate(codes)),
    })
