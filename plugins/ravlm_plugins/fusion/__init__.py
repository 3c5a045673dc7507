"""The reference fusion heads, registered through the same hook a third party uses.

``concat`` (no retrieval), ``concat-finetune`` (concat with the encoders trained end to
end, from the raw items), ``knn`` (the neighbours' labels vote), ``xattn`` (cross-attention
over the retrieved items) and ``infonce`` (the joint embedding of retrieval tasks). Each
factory takes ``dim`` (image + text feature width) and the suite's parameters; torch is
imported only when a factory is called. (The factories are not named after their
submodules: importing ``.concat`` sets the package attribute ``concat`` to the module.)
"""

from __future__ import annotations

from ravlm_bench.hookspecs import hookimpl
from ravlm_plugins._lazy import lazy_factory

concat_head = lazy_factory("ravlm_plugins.fusion.concat", "ConcatHead")
knn_head = lazy_factory("ravlm_plugins.fusion.knn", "KnnHead")
xattn_head = lazy_factory("ravlm_plugins.fusion.xattn", "CrossAttentionHead")
concat_finetune_head = lazy_factory("ravlm_plugins.fusion.finetune", "ConcatFinetuneHead")
infonce_embedding = lazy_factory("ravlm_plugins.fusion.infonce", "InfoNCEEmbedding")


@hookimpl
def register_fusion_heads(register) -> None:
    register("concat", concat_head,
             description="no retrieval: [image; text] -> Linear(hidden=1024) -> classifier")
    register("knn", knn_head,
             description="retrieval only: top-k neighbours' labels vote (optional interpolate)")
    register("xattn", xattn_head,
             description="retrieval-augmented: cross-attention over k retrieved items + labels")
    register("concat-finetune", concat_finetune_head,
             description="concat with its ResNet and BERT fine-tuned end to end (GPU advised)")
    register("infonce", infonce_embedding,
             description="joint embedding for retrieval tasks: projections + symmetric InfoNCE")
