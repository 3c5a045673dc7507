"""The pipeline of fusion-head tasks: queries (image + text) -> retrieved neighbours -> a
trained fusion head -> class scores of the test items.

The knowledge base is the task's training split or the system's external one; it is indexed
by the system's retriever under its retrieval key (a trained joint embedding is trained
once per task, seed and encoders, and shared by the systems that name it). Training
queries never retrieve their own image. Besides the scores, a cell measures its search
(throughput, latency, recall against exact search) and keeps what each test item saw.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ravlm_bench.config.suite import FIXED_KEYS, ComponentSpec, SystemSpec
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import (
    ClassificationData,
    FusionInputs,
    KnowledgeBase,
    LabelledSplit,
    TrainingReport,
    capability,
)
from ravlm_bench.run.pipeline import (
    CellContext,
    Encoders,
    PipelineOutput,
    StageClock,
    create_encoders,
    describe,
    measure_search,
    memory_bytes,
)
from ravlm_bench.scoring.evaluation import ClassScores
from ravlm_bench.stages.components import Component, guard
from ravlm_bench.stages.retrieval import (
    DIAGNOSTIC_QUERIES,
    IMAGE_AND_TEXT,
    RetrievalKey,
    build_index,
    fusion_inputs,
    retrieval_diagnostics,
)
from ravlm_bench.store.explorer_arrays import explorer_arrays


@dataclass
class Search:
    """How a fusion cell's queries find their neighbours: the knowledge base, the key that
    embeds queries and items, and the index (None for a head that does not retrieve)."""

    kb: KnowledgeBase
    k: int
    metric: str
    key: RetrievalKey = IMAGE_AND_TEXT
    key_component: Component | None = None  # a trained retrieval key
    retriever: Component | None = None

    def inputs(self, split: LabelledSplit, image: np.ndarray, text: np.ndarray,
               num_classes: int, owner: Component, exclude_same_image: bool) -> FusionInputs:
        """The split's queries with their neighbours and raw items, as a head takes them."""
        with guard(self.retriever or owner, "search"):
            prepared = fusion_inputs(
                image, text, retriever=self.retriever.obj if self.retriever else None,
                kb=self.kb, k=self.k, labels=split.labels, image_ids=split.image_ids,
                exclude_same_image=exclude_same_image, num_classes=num_classes, key=self.key,
                metric=self.metric)
        prepared.image_paths, prepared.texts = split.image_paths, split.texts
        return prepared

    def describe_key(self) -> dict:
        """The retrieval key as the cell's provenance names it."""
        if self.key_component is not None:
            return self.key_component.describe()
        return {"name": self.key.name}


def run_fusion_cell(task: Component, data: ClassificationData, system: SystemSpec, seed: int,
                    ctx: CellContext, clock: StageClock,
                    checkpoint_dir: Path | None) -> PipelineOutput:
    """Queries (image + text) -> retrieved neighbours -> a trained fusion head -> class
    scores of the test items."""
    if system.fusion_head is None:
        raise ConfigError(f"system {system.name!r} has no fusion_head, which task "
                          f"{task.name!r} needs")
    encoders = create_encoders(system, ctx)
    splits = {role: split for role, split in
              (("train", data.train), ("val", data.val), ("test", data.test)) if split is not None}
    with clock("encode"):
        image = {r: ctx.features.images(encoders.image, r, s.image_paths)
                 for r, s in splits.items()}
        text = {r: ctx.features.texts(encoders.text, r, s.texts) for r, s in splits.items()}
    head = _fusion_head(system.fusion_head, system, task, ctx, encoders.dim)
    uses_retrieval = bool(capability(head.obj, "fusion-heads", "uses_retrieval"))
    search = Search(_knowledge_base(data, image, text, ctx, encoders, clock),
                    int(capability(head.obj, "fusion-heads", "k")), ctx.metric)
    if uses_retrieval:
        if system.retriever is None:
            raise ConfigError(f"system {system.name!r}: fusion head {head.name!r} uses "
                              f"retrieval; give the system a retriever")
        with clock("retrieval_key"):
            search.key, search.key_component = _retrieval_key(
                system, task, data, image, text, seed, ctx, encoders, checkpoint_dir)
    with clock("index"):
        cost = (_build_index(search, system.retriever, ctx)
                if uses_retrieval and system.retriever is not None else {})

    def inputs(role: str, exclude_same_image: bool) -> FusionInputs:
        return search.inputs(splits[role], image[role], text[role], len(data.classes), head,
                             exclude_same_image)

    with clock("train"):
        train_inputs = inputs("train", exclude_same_image=True)
        val_inputs = inputs("val", exclude_same_image=False) if "val" in splits else None
        with guard(head, "fit"):
            training = TrainingReport.from_fit(head.obj.fit(
                train_inputs, val_inputs, seed=seed,
                **ctx.execution.training_kwargs(head.obj, "fusion-heads", checkpoint_dir)))
    diagnostics = None
    with clock("predict"):
        test_inputs = inputs("test", exclude_same_image=False)
        test_inputs.labels = None  # a head never sees test labels
        with guard(head, "predict_proba"):
            scores = ctx.execution.predict(head.obj, test_inputs, len(data.classes))
        if search.retriever is not None:
            diagnostics = _measure_retrieval(search, search.retriever, image["test"],
                                             text["test"], data.test.labels, test_inputs, cost)
    components = describe(encoders.image, encoders.text, search.retriever, head)
    components["retrieval_key"] = search.describe_key()
    explore = functools.partial(
        explorer_arrays, data.test, ctx.knowledge.items if ctx.knowledge else data.train,
        search.kb.labels, data.classes, scores, test_inputs.neighbours,
        test_inputs.neighbour_scores)
    return PipelineOutput(ClassScores(scores), cost, training, components, diagnostics, explore)


def _fusion_head(spec: ComponentSpec, system: SystemSpec, task: Component, ctx: CellContext,
                 dim: int) -> Component:
    """A fresh fusion head of the system, checked to predict the targets the task has."""
    head = ctx.factory.create("fusion-heads", spec, fresh=True, dim=dim)
    targets = capability(task.obj, "tasks", "targets")
    predicts = capability(head.obj, "fusion-heads", "targets")
    if targets not in predicts:
        raise ConfigError(f"system {system.name!r}: fusion head {head.name!r} predicts "
                          f"{' or '.join(predicts)} targets; task {task.name!r} needs {targets}")
    return head


def _knowledge_base(data: ClassificationData, image: dict, text: dict, ctx: CellContext,
                    encoders: Encoders, clock: StageClock) -> KnowledgeBase:
    """The task's training split, or the system's external knowledge base (no labels: -1,
    or empty label rows for multi-label tasks)."""
    if ctx.knowledge is None:
        return KnowledgeBase(image=image["train"], text=text["train"],
                             labels=data.train.labels, image_ids=data.train.image_ids)
    items, store = ctx.knowledge.items, ctx.knowledge.features
    with clock("encode"):
        kb_image = store.images(encoders.image, "knowledge", items.image_paths)
        kb_text = store.texts(encoders.text, "knowledge", items.texts)
    train_labels = np.asarray(data.train.labels)
    labels = (np.zeros((len(items), train_labels.shape[1]), train_labels.dtype)
              if train_labels.ndim == 2 else np.full(len(items), -1, np.int64))
    return KnowledgeBase(image=kb_image, text=kb_text, labels=labels, image_ids=items.image_ids)


class LearnedKey(NamedTuple):
    """A system's retrieval key, and the joint embedding component it was trained as (None
    for the fixed keys)."""

    key: RetrievalKey
    component: Component | None


def _retrieval_key(system: SystemSpec, task: Component, data: ClassificationData,
                   image: dict, text: dict, seed: int, ctx: CellContext, encoders: Encoders,
                   checkpoint_dir: Path | None) -> LearnedKey:
    """The system's retrieval key; a joint embedding is trained on the training split's
    (image, text) pairs once per (task, seed, encoders, embedding) and shared."""
    spec = system.retrieval_key
    if spec.name in FIXED_KEYS:
        return LearnedKey(RetrievalKey(spec.name), None)
    memo = (task.name, seed, json.dumps(spec.as_dict(), sort_keys=True),
            *(f"{e.name}:{e.fingerprint() or id(e.obj)}" for e in encoders))
    if memo not in ctx.learned_keys:
        embedding = ctx.factory.create("joint-embeddings", spec, fresh=True, dim=encoders.dim)
        _, first, caption_image = np.unique(data.train.image_ids, return_index=True,
                                            return_inverse=True)
        key_dir = None
        if checkpoint_dir is not None:  # beside the systems' directories, shared by them
            digest = hashlib.sha256(json.dumps(memo).encode()).hexdigest()[:12]
            key_dir = (Path(checkpoint_dir).parent.parent / f"#retrieval-key-{spec.name}-{digest}"
                       / f"seed-{seed}")
        with guard(embedding, "fit_pairs"):
            embedding.obj.fit_pairs(
                image["train"][first], text["train"], caption_image.astype(np.int64),
                seed=seed, **ctx.execution.training_kwargs(embedding.obj, embedding.kind,
                                                           key_dir))
        ctx.learned_keys[memo] = LearnedKey(RetrievalKey(spec.name, embedding.obj), embedding)
    return ctx.learned_keys[memo]


def _build_index(search: Search, spec: ComponentSpec, ctx: CellContext) -> dict[str, Any]:
    """Index the knowledge base with a fresh retriever ``spec``, embedded by the search's
    key; what the index cost to build and holds in memory."""
    kb = search.kb
    key_dim = search.key.vectors(kb.image[:1], kb.text[:1]).shape[1]
    search.retriever = ctx.execution.retriever(ctx.factory.create(
        "retrievers", spec, fresh=True, dim=key_dim, metric=ctx.metric))
    build_started = time.perf_counter()
    with guard(search.retriever, "build"):
        build_index(search.retriever.obj, kb, search.key)
    return {"index_build_s": time.perf_counter() - build_started,
            "index_memory_bytes": memory_bytes(search.retriever)}


def _measure_retrieval(search: Search, retriever: Component, test_image: np.ndarray,
                       test_text: np.ndarray, test_labels: np.ndarray,
                       test_inputs: FusionInputs, cost: dict[str, Any]) -> dict:
    """Add the retriever's throughput and latency on the test queries to ``cost``; return
    the retrieval diagnostics of the neighbours they got."""
    queries = search.key.vectors(test_image, test_text)
    cost.update(measure_search(retriever, queries, search.k, labels=test_labels))
    exact = _exact_rows(queries, search.key.vectors(search.kb.image, search.kb.text), search.k,
                        search.metric)
    return retrieval_diagnostics(test_inputs, test_labels, exact)


def _exact_rows(queries: np.ndarray, items: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact search's top-k rows of the first test queries, the reference an approximate
    retriever's recall is measured against."""
    from ravlm_bench.scoring.ranking import exact_top_k

    sample = queries[:DIAGNOSTIC_QUERIES]
    rows, _ = exact_top_k(sample, items, min(k, len(items)), metric)
    return rows
