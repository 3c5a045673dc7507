"""The reference fusion heads (``concat``, ``concat-finetune``, ``knn``, ``xattn``, the
answer-extracting ``reader``, and for multi-label tasks ``multilabel-linear`` and
``multilabel-knn``) and joint embeddings (``infonce``, and ``evidence-lda``, a retrieval
key learned from gold evidence), registered through the hooks a third party uses with
their options declared in :mod:`.options`; each factory takes ``dim`` (image + text feature
width) and imports torch only when called. (The factories are not named after their
submodules: importing ``.concat`` sets the package attribute ``concat`` to the module.)
"""

from __future__ import annotations

from ravlm_bench.api import hookimpl
from ravlm_plugins._lazy import lazy_factory

from .options import (
    ConcatOptions,
    CrossAttentionOptions,
    EvidenceLdaOptions,
    FinetuneOptions,
    InfoNCEOptions,
    KnnOptions,
    MultilabelKnnOptions,
    MultilabelLinearOptions,
    ReaderOptions,
)

concat_head = lazy_factory("ravlm_plugins.fusion.concat", "ConcatHead")
knn_head = lazy_factory("ravlm_plugins.fusion.knn", "KnnHead")
xattn_head = lazy_factory("ravlm_plugins.fusion.xattn", "CrossAttentionHead")
concat_finetune_head = lazy_factory("ravlm_plugins.fusion.finetune", "ConcatFinetuneHead")
multilabel_linear_head = lazy_factory("ravlm_plugins.fusion.concat", "MultilabelLinearHead")
multilabel_knn_head = lazy_factory("ravlm_plugins.fusion.knn", "MultilabelKnnHead")
reader_head = lazy_factory("ravlm_plugins.fusion.reader", "ReaderHead")
infonce_embedding = lazy_factory("ravlm_plugins.fusion.infonce", "InfoNCEEmbedding")
evidence_lda_embedding = lazy_factory("ravlm_plugins.fusion.evidence_key", "EvidenceLDA")


@hookimpl
def register_fusion_heads(register) -> None:
    register("concat", concat_head, options=ConcatOptions,
             description="no retrieval: [image; text] -> Linear(hidden=1024) -> classifier")
    register("knn", knn_head, options=KnnOptions,
             description="retrieval only: top-k neighbours' labels vote (optional interpolate)")
    register("xattn", xattn_head, options=CrossAttentionOptions,
             description="retrieval-augmented: cross-attention over k retrieved items + labels")
    register("reader", reader_head, options=ReaderOptions,
             description="retrieve-then-read: answers scored by where they occur in the "
                         "retrieved passages (rank-weighted) on a question-only prior")
    register("concat-finetune", concat_finetune_head, options=FinetuneOptions,
             description="concat with its ResNet and BERT fine-tuned end to end (GPU advised)")
    register("multilabel-linear", multilabel_linear_head, options=MultilabelLinearOptions,
             description="multi-label, no retrieval: [image; text] -> Linear(hidden) -> "
                         "a sigmoid per class, binary cross-entropy")
    register("multilabel-knn", multilabel_knn_head, options=MultilabelKnnOptions,
             description="multi-label, retrieval only: per class, the weighted share of the "
                         "top-k neighbours that have it")


@hookimpl
def register_joint_embeddings(register) -> None:
    register("infonce", infonce_embedding, options=InfoNCEOptions,
             description="projections of image and text features trained with symmetric "
                         "InfoNCE (retrieval tasks)")
    register("evidence-lda", evidence_lda_embedding, options=EvidenceLdaOptions,
             description="an image retrieval key learned from gold evidence: linear "
                         "discriminants of the training queries' entities")
