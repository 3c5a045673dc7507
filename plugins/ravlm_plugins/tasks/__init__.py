"""The reference tasks: the leaderboard columns, each declaring its parameters, its head
interface and its metrics (``coco-multilabel`` is the multi-label task, written against the
public API alone)."""

from __future__ import annotations

from dataclasses import dataclass

from ravlm_bench.api import hookimpl, option
from ravlm_plugins._lazy import lazy_factory


@dataclass
class CocoCategoryOptions:
    captions_per_image: int = option(1, "captions paired with each image (one item each)",
                                     minimum=1)
    min_count: int = option(1, "classes need this many training items", minimum=1)


@dataclass
class CocoMultilabelOptions:
    captions_per_image: int = option(1, "captions paired with each image (one item each)",
                                     minimum=1)
    min_count: int = option(1, "categories need this many training images", minimum=1)
    threshold: float = option(0.5, "a category is predicted when its probability reaches "
                                   "this (the F1 scores)", minimum=0.0, maximum=1.0)


@dataclass
class RetrievalOptions:
    test_images: int | None = option(None, "first N test images by id (None: all)", minimum=1)
    train_images: int | None = option(None, "first N training images by id (None: all)",
                                      minimum=1)
    ks: list[int] = option([1, 5, 10], "the K of Recall@K")


@dataclass
class MatchingOptions:
    negatives_per_positive: int = option(1, "mismatched captions per true pair", minimum=1)
    pool: int = option(10, "hard negatives are drawn among this many nearest captions",
                       minimum=1)
    hard: bool = option(True, "TF-IDF nearest captions as negatives (false: random ones)")


@dataclass
class QAOptions:
    top_answers: int = option(1000, "the label space: the N most frequent training answers",
                              minimum=1)
    min_count: int = option(1, "answers need this many training questions", minimum=1)


@dataclass
class KnowledgeOptions:
    top_answers: int = option(5000, "the label space: the N most frequent training answers",
                              minimum=1)
    min_count: int = option(1, "answers need this many training questions", minimum=1)


def _retrieval(name: str, dataset: str):
    def factory(**params):
        from ravlm_plugins.tasks.image_text_retrieval import ImageTextRetrieval

        return ImageTextRetrieval(name, dataset, **params)

    return factory


def _lazy(module: str, cls: str):
    return lazy_factory(f"ravlm_plugins.tasks.{module}", cls)


@hookimpl
def register_tasks(register):
    register("coco-category", _lazy("coco_category", "CocoCategory"), options=CocoCategoryOptions,
             description="image + caption -> category of the largest non-crowd instance")
    register("coco-multilabel", _lazy("coco_multilabel", "CocoMultilabel"),
             options=CocoMultilabelOptions,
             description="image + caption -> every non-crowd category present (mAP, F1s)")
    register("coco-retrieval", _retrieval("coco-retrieval", "coco"), options=RetrievalOptions,
             description="image-text Recall@K on COCO (Karpathy test split)")
    register("flickr30k-retrieval", _retrieval("flickr30k-retrieval", "flickr30k"),
             options=RetrievalOptions,
             description="image-text Recall@K on Flickr30k (Karpathy test split)")
    register("flickr30k-itm", _lazy("image_text_matching", "ImageTextMatching"),
             options=MatchingOptions,
             description="does this caption describe this image? (hard negatives)")
    register("vg-qa", _lazy("vg_qa", "VisualGenomeQA"), options=QAOptions,
             description="image + question -> answer over the top-N normalised answers")
    register("okvqa", _lazy("knowledge_vqa", "OKVQA"), options=KnowledgeOptions,
             description="OK-VQA: image + question -> answer from outside knowledge "
                         "(VQA accuracy)")
    register("aokvqa", _lazy("knowledge_vqa", "AOKVQA"), options=KnowledgeOptions,
             description="A-OKVQA: direct answer and multiple choice (its official scores)")
    register("infoseek", _lazy("knowledge_vqa", "InfoSeek"), options=KnowledgeOptions,
             description="InfoSeek: entity questions, harmonic mean of unseen-question and "
                         "unseen-entity accuracy")
