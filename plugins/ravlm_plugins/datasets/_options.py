"""The parameters a suite may give each dataset plugin (``[data.NAME]``), declared for the
registry. This module imports nothing heavy: loading the plugins reads it, creating a
dataset imports the loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ravlm_bench.api import DATA_ENV, DEFAULT_MAX_IMAGE_PIXELS, option

OnBadImage = Literal["fail", "skip"]
SplitScheme = Literal["official", "karpathy"]
PassagesFormat = Literal["auto", "jsonl", "parquet", "hf"]


@dataclass
class DatasetOptions:
    """What a suite may set on every reference dataset."""

    root: str | None = option(None, "the dataset directory (\"demo\": the demo world); "
                                    f"none: ${DATA_ENV}/<name>")
    check_images: bool = option(True, "each image file must exist and its header decode")
    on_bad_image: OnBadImage = option("fail", "a missing or unreadable image fails the load, "
                                              "or is skipped with its records")
    max_image_pixels: int = option(
        DEFAULT_MAX_IMAGE_PIXELS, "an image whose header announces more pixels is a bad "
        "image (refused before decoding); Pillow refuses over ~179 million in any case")


@dataclass
class Flickr30kOptions(DatasetOptions):
    """What a suite may set on ``flickr30k``: the common parameters only."""


@dataclass
class CocoOptions(DatasetOptions):
    """What a suite may set on ``coco``."""

    year: Literal[2014, 2017] | None = option(None, "release of the files; none: detected")
    split_scheme: SplitScheme | None = option(
        None, "none: karpathy when dataset_coco.json is at the root, else official")


@dataclass
class VisualGenomeOptions(DatasetOptions):
    """What a suite may set on ``visual_genome``."""

    split_seed: int = option(0, "seed of the hashed 80/10/10 train/val/test split of the "
                                "image ids (Visual Genome has no official split)")


@dataclass
class KnowledgeVqaOptions(DatasetOptions):
    """What a suite may set on the knowledge-based VQA datasets."""

    image_root: str | None = option(
        None, "the folder holding the image folders (a relative path: from the dataset "
              "root); none: the dataset root")


@dataclass
class OkvqaOptions(KnowledgeVqaOptions):
    """What a suite may set on ``okvqa``: images in IMAGE_ROOT/{train,val}2014/."""


@dataclass
class AokvqaOptions(KnowledgeVqaOptions):
    """What a suite may set on ``aokvqa``: images in IMAGE_ROOT/{train,val,test}2017/."""


@dataclass
class InfoseekOptions(KnowledgeVqaOptions):
    """What a suite may set on ``infoseek``: images in IMAGE_ROOT/images/."""


@dataclass
class PassagesOptions(DatasetOptions):
    """What a suite may set on ``passages``."""

    format: PassagesFormat = option(
        "auto", "corpus.jsonl, corpus.parquet or a saved `datasets` dataset (\"hf\"); auto: "
                "whichever is at the root, in that order")
