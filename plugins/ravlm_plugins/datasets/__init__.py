"""The reference dataset plugins in their on-disk formats: COCO, Flickr30k and Visual Genome;
the knowledge-based VQA sets OK-VQA, A-OKVQA and InfoSeek; and ``passages``, a text knowledge
base.

Registered through the ``ravlm_bench`` entry point ``datasets`` like any third-party plugin.
Importing this module touches no disk; each factory imports its loader when called. (The
factories are named ``create_*`` because importing submodule ``coco`` sets the package
attribute ``coco``, which would replace an object of that name.)

Every factory takes ``root`` (default: ``$RAVLM_DATA/<name>``), ``check_images`` (default
True: each image file must exist and its header decode), ``on_bad_image`` (``"fail"``, the
default, or ``"skip"``) and ``max_image_pixels`` (an image whose header announces more
pixels is a bad image, refused before decoding). Dataset-specific options:

- ``coco``: ``year`` (2014 or 2017; detected from the files), ``split_scheme``
  (``"karpathy"`` when ``dataset_coco.json`` is present, else ``"official"``).
- ``visual_genome``: ``split_seed`` (Visual Genome has no official split: images are split
  80 / 10 / 10 into train / val / test by a hash of the image id and this seed).
- ``okvqa``, ``aokvqa``, ``infoseek``: ``image_root`` (the folder holding the image folders
  ``train2014/``..., ``train2017/``... or ``images/``; default: the dataset root). Their
  records are ``images`` and ``knowledge_questions``.
- ``passages``: ``format`` (``"jsonl"``: ``corpus.jsonl``, ``"parquet"``: ``corpus.parquet``,
  ``"hf"``: a saved ``datasets`` dataset; ``"auto"``, the default: whichever is at the root).
  Its records are ``passages`` in split ``corpus``, and ``images`` only if passages have any.

The registry reads them, typed, from the dataclasses of ``_options``.
"""

from __future__ import annotations

from ravlm_bench.api import hookimpl
from ravlm_plugins._lazy import lazy_factory

from ._options import (
    AokvqaOptions,
    CocoOptions,
    Flickr30kOptions,
    InfoseekOptions,
    OkvqaOptions,
    PassagesOptions,
    VisualGenomeOptions,
)

create_coco = lazy_factory("ravlm_plugins.datasets.coco", "create")
create_flickr30k = lazy_factory("ravlm_plugins.datasets.flickr30k", "create")
create_visual_genome = lazy_factory("ravlm_plugins.datasets.visual_genome", "create")
create_okvqa = lazy_factory("ravlm_plugins.datasets.okvqa", "create")
create_aokvqa = lazy_factory("ravlm_plugins.datasets.aokvqa", "create")
create_infoseek = lazy_factory("ravlm_plugins.datasets.infoseek", "create")
create_passages = lazy_factory("ravlm_plugins.datasets.passages", "create")


@hookimpl
def register_datasets(register):
    register("coco", create_coco,
             description="COCO 2014/2017 captions and instances; official or Karpathy splits",
             options=CocoOptions)
    register("flickr30k", create_flickr30k,
             description="Flickr30k captions; Karpathy splits, results_20130124.token or "
                         "results.csv",
             options=Flickr30kOptions)
    register("visual_genome", create_visual_genome,
             description="Visual Genome v1.2 images, questions, regions and objects; "
             "hashed train/val/test split",
             options=VisualGenomeOptions)
    register("okvqa", create_okvqa,
             description="OK-VQA v1.1 questions on COCO 2014 images; ten answers each; "
                         "train/val",
             options=OkvqaOptions)
    register("aokvqa", create_aokvqa,
             description="A-OKVQA v1.0 questions on COCO 2017 images; choices and direct "
                         "answers; train/val/test",
             options=AokvqaOptions)
    register("infoseek", create_infoseek,
             description="InfoSeek questions on OVEN images; string and numeric answers; "
                         "train/unseen_question/unseen_entity",
             options=InfoseekOptions)
    register("passages", create_passages,
             description="a text knowledge base: BEIR corpus.jsonl, corpus.parquet or a saved "
                         "datasets dataset; split corpus",
             options=PassagesOptions)
