"""The reference dataset plugins: COCO, Flickr30k and Visual Genome in their on-disk formats.

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

The registry reads them, typed, from the dataclasses of ``_options``.
"""

from __future__ import annotations

from ravlm_bench.api import hookimpl
from ravlm_plugins._lazy import lazy_factory

from ._options import CocoOptions, Flickr30kOptions, VisualGenomeOptions

create_coco = lazy_factory("ravlm_plugins.datasets.coco", "create")
create_flickr30k = lazy_factory("ravlm_plugins.datasets.flickr30k", "create")
create_visual_genome = lazy_factory("ravlm_plugins.datasets.visual_genome", "create")


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
