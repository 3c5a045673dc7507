"""The pipeline of fusion-head tasks: queries (image + text) -> retrieved neighbours -> a
trained fusion head -> class scores of the test items.

The knowledge base is the task's training split or the system's external one; it is indexed
by the system's retriever under its retrieval key (a trained joint embedding is trained
once per task, seed and encoders, and shared by the systems that name it). Training
queries never retrieve their own image. Besides the scores, a cell measures its search
(throughput, latency, recall against exact search), keeps what each test item saw and, for
the retrieval dependence, scores the test queries again with their retrieval corrupted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from ravlm_bench.config.knowledge import KnowledgeSpec
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
from ravlm_bench.scoring.dependence import CORRUPTION_LEVELS
from ravlm_bench.scoring.evaluation import ClassScores
from ravlm_bench.stages.components import Component, guard
from ravlm_bench.stages.corruption import corrupted, stacked
from ravlm_bench.stages.distractors import Distractors, look_alike_rows, synthesise
from ravlm_bench.stages.retrieval import (
    DIAGNOSTIC_QUERIES,
    IMAGE_AND_TEXT,
    EvidenceCodes,
    RetrievalKey,
    answer_evidence,
    build_index,
    fusion_inputs,
    retrieval_diagnostics,
)
from ravlm_bench.store.explorer_arrays import explorer_arrays
from ravlm_bench.store.index_cache import cached_build


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
    # an external knowledge base naming its evidence: the oracle matches evidence, not labels
    codes: EvidenceCodes | None = None
    distractors: Distractors | None = None  # synthesised beside the knowledge base
    index_vectors: np.ndarray | None = None  # what the index holds, once built
    exact_memo: dict | None = None  # exact search's results over the distractors, shared

    def retriever_labels(self, split: LabelledSplit) -> np.ndarray:
        """What a label-using retriever gets for the split's queries: their labels, or the
        codes of their gold evidence."""
        if self.codes is None:
            return split.labels
        return self.codes.codes(split.evidence, len(split))

    def inputs(self, split: LabelledSplit, image: np.ndarray, text: np.ndarray,
               classes: list[str], owner: Component, exclude_same_image: bool) -> FusionInputs:
        """The split's queries with their neighbours and raw items, as a head takes them."""
        with guard(self.retriever or owner, "search"):
            prepared = fusion_inputs(
                image, text, retriever=self.retriever.obj if self.retriever else None,
                kb=self.kb, k=self.k, labels=split.labels, image_ids=split.image_ids,
                exclude_same_image=exclude_same_image, num_classes=len(classes),
                key=self.key, metric=self.metric,
                retriever_labels=self.retriever_labels(split), distractors=self.distractors)
        prepared.image_paths, prepared.texts = split.image_paths, split.texts
        prepared.classes = list(classes)
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
    kb = _knowledge_base(data, image, text, ctx, encoders, clock)
    search = Search(kb, int(capability(head.obj, "fusion-heads", "k")), ctx.metric,
                    codes=EvidenceCodes.of(kb) if ctx.knowledge is not None else None)
    if uses_retrieval:
        if system.retriever is None:
            raise ConfigError(f"system {system.name!r}: fusion head {head.name!r} uses "
                              f"retrieval; give the system a retriever")
        with clock("retrieval_key"):
            search.key, search.key_component = _retrieval_key(
                system, task, data, image, text, seed, ctx, encoders, checkpoint_dir, search)
    with clock("index"):
        cost = (_build_index(search, system.retriever, ctx, system.knowledge)
                if uses_retrieval and system.retriever is not None else {})

    def inputs(role: str, exclude_same_image: bool) -> FusionInputs:
        return search.inputs(splits[role], image[role], text[role], data.classes, head,
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
                                             text["test"], data.test, test_inputs, cost)
            if data.test.answers is not None and test_inputs.knowledge.texts is not None:
                diagnostics.update(answer_evidence(
                    [data.classes[i] for i in scores.argmax(axis=1)], data.test.answers,
                    test_inputs.neighbours, test_inputs.knowledge.texts))
    corrupted = None
    if ctx.retrieval_dependence:  # a head without retrieval too: its dependence is measured 0
        with clock("dependence"), guard(head, "predict_proba"):
            corrupted = _corrupted_scores(head, test_inputs, search, ctx, len(data.classes))
    components = describe(encoders.image, encoders.text, search.retriever, head)
    components["retrieval_key"] = search.describe_key()
    explore = functools.partial(
        explorer_arrays, data.test, _explored_items(ctx, data, test_inputs, search),
        test_inputs.knowledge.labels, data.classes, scores, test_inputs.neighbours,
        test_inputs.neighbour_scores)
    return PipelineOutput(ClassScores(scores), cost, training, components, diagnostics, explore,
                          corrupted)


def _corrupted_scores(head: Component, test_inputs: FusionInputs, search: Search,
                      ctx: CellContext, width: int) -> dict[str, ClassScores]:
    """The head's scores of the test queries at every corruption level above 0 and with
    nothing retrieved, predicted in one call."""
    variants = corrupted(test_inputs, CORRUPTION_LEVELS[1:], search.key)
    joined, spans = stacked(variants)
    scores = ctx.execution.predict(head.obj, joined, width)
    return {name: ClassScores(scores[span]) for name, span in spans.items()}


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
                             labels=data.train.labels, image_ids=data.train.image_ids,
                             texts=data.train.texts, evidence=data.train.evidence)
    items, store = ctx.knowledge.items, ctx.knowledge.features
    with clock("encode"):
        # passages without an image get a zero image row: no image key ever retrieves them
        has_image = np.array([bool(p) for p in items.image_paths], dtype=bool)
        kb_image = np.zeros((len(items), encoders.image.obj.dim), np.float32)
        if has_image.any():
            kb_image[has_image] = store.images(
                encoders.image, "knowledge", [p for p in items.image_paths if p])
        kb_text = store.texts(encoders.text, "knowledge", items.texts)
    train_labels = np.asarray(data.train.labels)
    labels = (np.zeros((len(items), train_labels.shape[1]), train_labels.dtype)
              if train_labels.ndim == 2 else np.full(len(items), -1, np.int64))
    return KnowledgeBase(image=kb_image, text=kb_text, labels=labels, image_ids=items.image_ids,
                         texts=items.texts, evidence=items.evidence)


class LearnedKey(NamedTuple):
    """A system's retrieval key, and the joint embedding component it was trained as (None
    for the fixed keys)."""

    key: RetrievalKey
    component: Component | None


def _retrieval_key(system: SystemSpec, task: Component, data: ClassificationData,
                   image: dict, text: dict, seed: int, ctx: CellContext, encoders: Encoders,
                   checkpoint_dir: Path | None, search: Search) -> LearnedKey:
    """The system's retrieval key; a joint embedding is trained once per (task, seed,
    encoders, embedding, knowledge base) and shared: on the training split's (image, text)
    pairs, or, for one learned from evidence, on the training queries paired with the
    knowledge-base items of their gold evidence."""
    spec = system.retrieval_key
    if spec.name in FIXED_KEYS:
        return LearnedKey(RetrievalKey(spec.name), None)
    knowledge = system.knowledge.as_dict() if system.knowledge is not None else None
    memo = (task.name, seed, json.dumps(spec.as_dict(), sort_keys=True),
            json.dumps(knowledge, sort_keys=True),
            *(f"{e.name}:{e.fingerprint() or id(e.obj)}" for e in encoders))
    if memo not in ctx.learned_keys:
        embedding = ctx.factory.create("joint-embeddings", spec, fresh=True, dim=encoders.dim)
        key_dir = None
        if checkpoint_dir is not None:  # beside the systems' directories, shared by them
            digest = hashlib.sha256(json.dumps(memo).encode()).hexdigest()[:12]
            key_dir = (Path(checkpoint_dir).parent.parent / f"#retrieval-key-{spec.name}-{digest}"
                       / f"seed-{seed}")
        context = ctx.execution.training_kwargs(embedding.obj, embedding.kind, key_dir)
        if capability(embedding.obj, "joint-embeddings", "evidence"):
            queries, items = _evidence_pairs(system, data, search)
            with guard(embedding, "fit_evidence"):
                embedding.obj.fit_evidence(
                    image["train"][queries], text["train"][queries], search.kb.image,
                    search.kb.text, items, seed=seed, **context)
        else:
            _, first, caption_image = np.unique(data.train.image_ids, return_index=True,
                                                return_inverse=True)
            with guard(embedding, "fit_pairs"):
                embedding.obj.fit_pairs(image["train"][first], text["train"],
                                        caption_image.astype(np.int64), seed=seed, **context)
        ctx.learned_keys[memo] = LearnedKey(RetrievalKey(spec.name, embedding.obj), embedding)
    return ctx.learned_keys[memo]


def _evidence_pairs(system: SystemSpec, data: ClassificationData,
                    search: Search) -> tuple[np.ndarray, np.ndarray]:
    """(training query rows, knowledge-base rows): each training query whose gold evidence
    the knowledge base holds, paired with the first item of that evidence that has an image
    (else its first item)."""
    if search.codes is None or data.train.evidence is None:
        raise ConfigError(f"system {system.name!r}: retrieval key "
                          f"{system.retrieval_key.name!r} learns from gold evidence; it needs "
                          f"an external knowledge base whose items name evidence and a task "
                          f"whose training questions name theirs")
    kb_codes = search.codes.codes(search.kb.evidence, len(search.kb))
    has_image = np.abs(search.kb.image).sum(axis=1) > 0
    # stable order: rows with an image first, then by row; the first row of each code wins
    order = np.lexsort((np.arange(len(kb_codes)), ~has_image))
    item_of_code: dict[int, int] = {}
    for row in order[kb_codes[order] >= 0]:
        item_of_code.setdefault(int(kb_codes[row]), int(row))
    query_codes = search.codes.codes(data.train.evidence, len(data.train))
    queries = np.flatnonzero([c in item_of_code for c in query_codes.tolist()])
    if not len(queries):
        raise ConfigError(f"system {system.name!r}: no training question names evidence the "
                          f"knowledge base holds; retrieval key "
                          f"{system.retrieval_key.name!r} has nothing to learn from")
    items = np.array([item_of_code[int(query_codes[q])] for q in queries], np.int64)
    return queries.astype(np.int64), items


def _build_index(search: Search, spec: ComponentSpec, ctx: CellContext,
                 knowledge: KnowledgeSpec | None) -> dict[str, Any]:
    """Index the knowledge base, and the distractors ``knowledge`` asks for, with a fresh
    retriever ``spec``, embedded by the search's key; what the index cost to build (or,
    from the index cache, to load) and holds in memory."""
    kb = search.kb
    item_vectors = search.key.vectors(kb.image, kb.text)
    if knowledge is not None and knowledge.distractors:
        search.distractors, search.exact_memo = _shared_distractors(knowledge, item_vectors,
                                                                    kb, ctx)
    search.retriever = ctx.execution.retriever(ctx.factory.create(
        "retrievers", spec, fresh=True, dim=item_vectors.shape[1], metric=ctx.metric))
    build = cached_build(search.retriever.obj, spec.name) if ctx.cache_indexes else None
    build_started = time.perf_counter()
    with guard(search.retriever, "build"):
        search.index_vectors = build_index(search.retriever.obj, kb, search.key, search.codes,
                                           search.distractors, build)
    return {"index_build_s": time.perf_counter() - build_started,
            "index_memory_bytes": memory_bytes(search.retriever)}


def _measure_retrieval(search: Search, retriever: Component, test_image: np.ndarray,
                       test_text: np.ndarray, test: LabelledSplit,
                       test_inputs: FusionInputs, cost: dict[str, Any]) -> dict:
    """Add the retriever's throughput and latency on the test queries to ``cost``; return
    the retrieval diagnostics of the neighbours they got."""
    queries = search.key.vectors(test_image, test_text)
    cost.update(measure_search(retriever, queries, search.k,
                               labels=search.retriever_labels(test)))
    assert search.index_vectors is not None  # built with the retriever
    memo = search.exact_memo if search.exact_memo is not None else {}
    key = (_digest(queries), search.k, search.metric)
    if key not in memo:
        memo[key] = _exact_rows(queries, search.index_vectors, search.k, search.metric)
    exact = memo[key]
    return retrieval_diagnostics(test_inputs, test.labels, exact, answers=test.answers,
                                 evidence=test.evidence)


def _shared_distractors(knowledge: KnowledgeSpec, item_vectors: np.ndarray, kb: KnowledgeBase,
                        ctx: CellContext) -> tuple[Distractors, dict]:
    """The distractors of the items embedded as ``item_vectors``, synthesised once for the
    systems of a run that embed them alike, with the memo of exact search's results over
    them (the run keeps the latest only)."""
    memo = (json.dumps(knowledge.as_dict(), sort_keys=True), _digest(item_vectors))
    if memo not in ctx.distractors:
        ctx.distractors.clear()
        ctx.distractors[memo] = synthesise(knowledge, item_vectors, kb.evidence), {}
    shared: tuple[Distractors, dict] = ctx.distractors[memo]
    return shared


def _digest(array: np.ndarray) -> str:
    # the buffer itself, not a copy of it (distractor matrices run to gigabytes)
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return hashlib.sha256(flat.data).hexdigest()


def _explored_items(ctx: CellContext, data: ClassificationData, test_inputs: FusionInputs,
                    search: Search):
    """What the explorer shows of the rows of the test queries' knowledge base: the
    training split, the external items, or those with the distractors retrieved (a
    distractor shows its look-alike's picture and the text it carries)."""
    if ctx.knowledge is None:
        return data.train
    items = ctx.knowledge.items
    if search.distractors is None:
        return items
    pictures = look_alike_rows(test_inputs.knowledge, search.distractors)
    return SimpleNamespace(image_paths=[items.image_paths[int(r)] for r in pictures],
                           texts=test_inputs.knowledge.texts)


def _exact_rows(queries: np.ndarray, items: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact search's top-k rows of the first test queries, the reference an approximate
    retriever's recall is measured against."""
    from ravlm_bench.scoring.ranking import exact_top_k

    sample = queries[:DIAGNOSTIC_QUERIES]
    rows, _ = exact_top_k(sample, items, min(k, len(items)), metric)
    return rows
