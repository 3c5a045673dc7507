"""Which dataset splits a task trains, validates and tests on."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

from ravlm_bench.api import DataError

log = logging.getLogger(__name__)


def role_splits(dataset) -> dict[str, list[str]]:
    """Map train/val/test to dataset splits.

    Karpathy-style datasets have all three (``restval`` joins train). With only train/val
    (COCO's official split) val becomes the test split and a tenth of train is held out
    for validation (an empty list means "carve from train"); a single split is carved both
    ways.
    """
    available = set(dataset.splits())
    if {"train", "test"} <= available:
        train = [s for s in ("train", "restval") if s in available]
        return {"train": train, "val": ["val"] if "val" in available else [], "test": ["test"]}
    if {"train", "val"} <= available:
        return {"train": ["train"], "val": [], "test": ["val"]}
    if len(available) == 1:
        return {"train": sorted(available), "val": [], "test": []}
    raise DataError(f"{dataset.name} at {dataset.root}: cannot tell train and test splits "
                    f"apart among {sorted(available)}")


def load(dataset, kind: str, splits: list[str]) -> pd.DataFrame:
    frames = [dataset.table(kind, split).to_pandas() for split in splits]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def hash_fraction(image_id: int, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) per image, independent of row order."""
    digest = hashlib.sha256(f"{salt}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_frames(dataset, kind: str) -> dict[str, pd.DataFrame]:
    """Rows of ``kind`` for train, val and test, carving val (and test) out by image id."""
    roles = role_splits(dataset)
    frames = {role: load(dataset, kind, splits) for role, splits in roles.items()}
    if not roles["val"] or not roles["test"]:
        source = frames["train"]
        fraction = source["image_id"].map(lambda i: hash_fraction(int(i), "holdout"))
        # Held-out shares of the training images, by image id: test 20% (only when the
        # dataset has no test split), val 10%.
        train_end = 1.0
        if not roles["test"]:
            frames["test"] = source[fraction >= 0.8].reset_index(drop=True)
            train_end = 0.8
            log.info("%s: no test split; holding out 20%% of training images", dataset.name)
        if not roles["val"]:
            frames["val"] = source[(fraction >= train_end - 0.1) & (fraction < train_end)]
            frames["val"] = frames["val"].reset_index(drop=True)
            train_end -= 0.1
        frames["train"] = source[fraction < train_end].reset_index(drop=True)
    for role, frame in frames.items():
        if role != "val" and frame.empty:
            raise DataError(f"{dataset.name} at {dataset.root}: the {role} split has no "
                            f"{kind} records")
    return frames
