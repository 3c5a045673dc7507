"""One cell of a suite: a (task, system, seed) run from features to an evaluation.

Data flows one way: task data -> features (cached) -> retrieval -> the head (trained) ->
outputs -> the task's evaluation. Which pipeline a cell runs is the head interface its task
declares (``task.head``): :func:`run_fusion_cell` gives a fusion head's class scores,
:func:`run_joint_embedding_cell` a joint embedding's image-text rankings. How a step divides
across processes is the :class:`~ravlm_bench.stages.execution.Local` / ``Distributed`` wrapper's
business, not the pipeline's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ravlm_bench.config.suite import FIXED_KEYS, SystemSpec
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import (
    ClassificationData,
    ContractViolation,
    KnowledgeBase,
    RetrievalData,
    TrainingReport,
    capability,
    validate_search,
)
from ravlm_bench.scoring.evaluation import ClassScores, Evaluation, Rankings, Resampler
from ravlm_bench.stages.components import Component, ComponentFactory, guard
from ravlm_bench.stages.execution import Local
from ravlm_bench.stages.features import FeatureStore
from ravlm_bench.stages.retrieval import (
    DIAGNOSTIC_QUERIES,
    IMAGE_AND_TEXT,
    RetrievalKey,
    build_index,
    fusion_inputs,
    retrieval_diagnostics,
)
from ravlm_bench.store.explorer_arrays import explorer_arrays

log = logging.getLogger(__name__)

LATENCY_QUERIES = 200  # single-query searches timed for the p50 / p99 latency


@dataclass
class CellResult:
    evaluation: Evaluation
    cost: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    retrieval: dict | None = None  # retrieval_diagnostics of the test queries
    knowledge: dict | None = None  # an external knowledge base: its size, what the guard found


@dataclass
class CellContext:
    """What every cell of a run shares: components, features, execution, resamples."""

    factory: ComponentFactory
    features: FeatureStore
    metric: str
    execution: Local
    resampler: Resampler
    on_stage: Callable[[str], None] | None = None
    # trained retrieval keys, shared by the systems of a (task, seed) that name the same one
    learned_keys: dict = field(default_factory=dict)
    # the system's external knowledge base: (ExternalItems, its FeatureStore), or None
    knowledge: tuple | None = None


class StageClock:
    """Wall time per stage of a cell; tells a progress display as each stage begins."""

    def __init__(self, on_stage: Callable[[str], None] | None = None):
        self.timings: dict[str, float] = {}
        self.on_stage = on_stage or (lambda stage: None)
        self.started = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.on_stage(stage)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"{stage}_s"
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def finish(self) -> dict[str, float]:
        return {**self.timings, "total_s": time.perf_counter() - self.started}


def run_cell(task: Component, data, system: SystemSpec, seed: int, ctx: CellContext,
             checkpoint_dir: Path | None = None) -> CellResult:
    """Run the pipeline of the head interface ``task`` declares, and evaluate its outputs."""
    head_interface = capability(task.obj, "tasks", "head")
    pipeline = PIPELINES.get(head_interface)
    if pipeline is None:
        raise ComponentErrorFor(task, f"head interface {head_interface!r} is unknown; "
                                      f"use one of {', '.join(PIPELINES)}")
    clock = StageClock(ctx.on_stage)
    outputs, cost, training, components, retrieval, explore = pipeline(
        task, data, system, seed, ctx, clock, checkpoint_dir)
    with clock("evaluate"), guard(task, "evaluate"):
        evaluation = task.obj.evaluate(data, outputs, ctx.resampler)
        if not isinstance(evaluation, Evaluation):
            raise ContractViolation(f"evaluate returned {type(evaluation).__name__}, "
                                    f"expected an Evaluation")
    if explore is not None:  # what each item saw and got, for `show` and the explorer
        threshold = evaluation.details.get("threshold", 0.5)
        evaluation.predictions.update(explore(threshold=float(threshold)))
    cost["train_s"] = training_cost(clock.timings.get("train_s", 0.0), training)
    return CellResult(evaluation=evaluation, cost=cost, timings=clock.finish(),
                      components=components, training=training.as_dict(),
                      retrieval=retrieval,
                      knowledge=ctx.knowledge[0].findings if ctx.knowledge else None)


def ComponentErrorFor(component: Component, message: str):  # noqa: N802 (an error factory)
    from ravlm_bench.foundation.errors import ComponentError

    return ComponentError(component.kind[:-1], component.name, component.plugin, message)


def _encoders(system: SystemSpec, ctx: CellContext) -> tuple[Component, Component]:
    return (ctx.factory.create("image-encoders", system.image_encoder),
            ctx.factory.create("text-encoders", system.text_encoder))


def run_fusion_cell(task: Component, data: ClassificationData, system: SystemSpec, seed: int,
                    ctx: CellContext, clock: StageClock, checkpoint_dir: Path | None):
    """Queries (image + text) -> retrieved neighbours -> a trained fusion head -> class
    scores of the test items."""
    if system.fusion_head is None:
        raise ConfigError(f"system {system.name!r} has no fusion_head, which task "
                          f"{task.name!r} needs")
    image_encoder, text_encoder = _encoders(system, ctx)
    splits = {role: split for role, split in
              (("train", data.train), ("val", data.val), ("test", data.test)) if split is not None}
    with clock("encode"):
        image = {r: ctx.features.images(image_encoder, r, s.image_paths) for r, s in splits.items()}
        text = {r: ctx.features.texts(text_encoder, r, s.texts) for r, s in splits.items()}

    dim = image_encoder.obj.dim + text_encoder.obj.dim
    head = ctx.factory.create("fusion-heads", system.fusion_head, fresh=True, dim=dim)
    targets = capability(task.obj, "tasks", "targets")
    if targets not in capability(head.obj, "fusion-heads", "targets"):
        raise ConfigError(f"system {system.name!r}: fusion head {head.name!r} predicts "
                          f"{' or '.join(capability(head.obj, 'fusion-heads', 'targets'))} "
                          f"targets; task {task.name!r} needs {targets}")
    uses_retrieval = bool(capability(head.obj, "fusion-heads", "uses_retrieval"))
    k = int(capability(head.obj, "fusion-heads", "k"))
    kb = _knowledge_base(data, image, text, ctx, (image_encoder, text_encoder), clock)
    retriever, cost, key = None, {}, IMAGE_AND_TEXT
    key_component, diagnostics = None, None
    if uses_retrieval:
        if system.retriever is None:
            raise ConfigError(f"system {system.name!r}: fusion head {head.name!r} uses "
                              f"retrieval; give the system a retriever")
        with clock("retrieval_key"):
            key, key_component = _retrieval_key(system, task, data, image, text, seed, ctx,
                                                (image_encoder, text_encoder), checkpoint_dir)
    with clock("index"):
        if uses_retrieval:
            key_dim = key.vectors(kb.image[:1], kb.text[:1]).shape[1]
            retriever = ctx.execution.retriever(ctx.factory.create(
                "retrievers", system.retriever, fresh=True, dim=key_dim, metric=ctx.metric))
            build_started = time.perf_counter()
            with guard(retriever, "build"):
                build_index(retriever.obj, kb, key)
            cost["index_build_s"] = time.perf_counter() - build_started
            cost["index_memory_bytes"] = _memory_bytes(retriever)

    def inputs(role: str, exclude_same_image: bool):
        split = splits[role]
        with guard(retriever or head, "search"):
            prepared = fusion_inputs(
                image[role], text[role], retriever=retriever.obj if retriever else None, kb=kb,
                k=k, labels=split.labels, image_ids=split.image_ids,
                exclude_same_image=exclude_same_image, num_classes=len(data.classes),
                key=key, metric=ctx.metric)
        prepared.image_paths, prepared.texts = split.image_paths, split.texts
        # the spelling before 1.0, for heads that still read it
        prepared.extras.update(image_paths=split.image_paths, texts=split.texts)
        return prepared

    with clock("train"):
        train_inputs = inputs("train", exclude_same_image=True)
        val_inputs = inputs("val", exclude_same_image=False) if "val" in splits else None
        with guard(head, "fit"):
            training = TrainingReport.coerce(head.obj.fit(
                train_inputs, val_inputs, seed=seed,
                **ctx.execution.training_kwargs(head.obj, "fusion-heads", checkpoint_dir)))

    with clock("predict"):
        test_inputs = inputs("test", exclude_same_image=False)
        test_inputs.labels = None  # a head never sees test labels
        with guard(head, "predict_proba"):
            scores = ctx.execution.predict(head.obj, test_inputs, len(data.classes))
        if retriever is not None:
            queries = key.vectors(image["test"], text["test"])
            cost.update(measure_search(retriever, queries, k, labels=data.test.labels))
            diagnostics = retrieval_diagnostics(
                test_inputs, data.test.labels,
                _exact_rows(queries, key.vectors(kb.image, kb.text), k, ctx.metric))
    components = _describe(image_encoder, text_encoder, retriever, head)
    components["retrieval_key"] = (key_component.describe() if key_component is not None
                                   else {"name": key.name})
    explore = functools.partial(
        explorer_arrays, data.test, ctx.knowledge[0] if ctx.knowledge else data.train,
        kb.labels, data.classes, scores, test_inputs.neighbours, test_inputs.neighbour_scores)
    return ClassScores(scores), cost, training, components, diagnostics, explore


def run_joint_embedding_cell(task: Component, data: RetrievalData, system: SystemSpec,
                             seed: int, ctx: CellContext, clock: StageClock,
                             checkpoint_dir: Path | None):
    """Images and captions -> a joint embedding trained on the training pairs -> both test
    sides indexed -> rankings both ways."""
    image_encoder, text_encoder = _encoders(system, ctx)
    with clock("encode"):
        train_image = ctx.features.images(image_encoder, "train", data.train.image_paths)
        train_text = ctx.features.texts(text_encoder, "train", data.train.texts)
        test_image = ctx.features.images(image_encoder, "test", data.test.image_paths)
        test_text = ctx.features.texts(text_encoder, "test", data.test.texts)

    dim = image_encoder.obj.dim + text_encoder.obj.dim
    embedding = _joint_embedding(system, task, ctx, dim)
    if system.retriever is None:
        raise ConfigError(f"system {system.name!r} needs a retriever for task {task.name!r}")
    with clock("train"), guard(embedding, "fit_pairs"):
        training = TrainingReport.coerce(embedding.obj.fit_pairs(
            train_image, train_text, data.train.caption_image, seed=seed,
            **ctx.execution.training_kwargs(embedding.obj, embedding.kind, checkpoint_dir)))
        image_emb = np.ascontiguousarray(embedding.obj.embed_images(test_image), np.float32)
        text_emb = np.ascontiguousarray(embedding.obj.embed_texts(test_text), np.float32)

    cost = {}
    with clock("index"):
        emb_dim = image_emb.shape[1]
        images_index, captions_index = (ctx.execution.retriever(ctx.factory.create(
            "retrievers", system.retriever, fresh=True, dim=emb_dim, metric=ctx.metric))
            for _ in range(2))
        build_started = time.perf_counter()
        with guard(images_index, "build"):
            images_index.obj.build(image_emb, np.arange(len(image_emb), dtype=np.int64))
        cost["index_build_s"] = time.perf_counter() - build_started
        cost["index_memory_bytes"] = _memory_bytes(images_index)
        with guard(captions_index, "build"):
            captions_index.obj.build(text_emb, np.arange(len(text_emb), dtype=np.int64))

    with clock("predict"):
        depth = int(capability(task.obj, "tasks", "ranking_depth"))
        t2i = _search(images_index, text_emb, min(depth, len(image_emb)), depth)
        i2t = _search(captions_index, image_emb, min(depth, len(text_emb)), depth)
        cost.update(measure_search(images_index, text_emb, k=min(depth, len(image_emb))))
    return (Rankings(t2i=t2i, i2t=i2t), cost, training,
            _describe(image_encoder, text_encoder, images_index, embedding), None, None)


def _knowledge_base(data: ClassificationData, image: dict, text: dict, ctx: CellContext,
                    encoders: tuple[Component, Component], clock: StageClock) -> KnowledgeBase:
    """The task's training split, or the system's external knowledge base (no labels: -1,
    or empty label rows for multi-label tasks)."""
    if ctx.knowledge is None:
        return KnowledgeBase(image=image["train"], text=text["train"],
                             labels=data.train.labels, image_ids=data.train.image_ids)
    items, store = ctx.knowledge
    with clock("encode"):
        kb_image = store.images(encoders[0], "knowledge", items.image_paths)
        kb_text = store.texts(encoders[1], "knowledge", items.texts)
    train_labels = np.asarray(data.train.labels)
    labels = (np.zeros((len(items), train_labels.shape[1]), train_labels.dtype)
              if train_labels.ndim == 2 else np.full(len(items), -1, np.int64))
    return KnowledgeBase(image=kb_image, text=kb_text, labels=labels, image_ids=items.image_ids)


def _retrieval_key(system: SystemSpec, task: Component, data, image: dict, text: dict,
                   seed: int, ctx: CellContext, encoders: tuple[Component, Component],
                   checkpoint_dir: Path | None):
    """The system's retrieval key; a joint embedding is trained on the training split's
    (image, text) pairs once per (task, seed, encoders, embedding) and shared."""
    spec = system.retrieval_key
    if spec.name in FIXED_KEYS:
        return RetrievalKey(spec.name), None
    memo = (task.name, seed, json.dumps(spec.as_dict(), sort_keys=True),
            *(f"{e.name}:{e.fingerprint() or id(e.obj)}" for e in encoders))
    if memo not in ctx.learned_keys:
        dim = encoders[0].obj.dim + encoders[1].obj.dim
        embedding = ctx.factory.create("joint-embeddings", spec, fresh=True, dim=dim)
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
        ctx.learned_keys[memo] = (RetrievalKey(spec.name, embedding.obj), embedding)
    return ctx.learned_keys[memo]


def _exact_rows(queries: np.ndarray, items: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact search's top-k rows of the first test queries, the reference an approximate
    retriever's recall is measured against."""
    from ravlm_bench.scoring.ranking import exact_top_k

    sample = queries[:DIAGNOSTIC_QUERIES]
    rows, _ = exact_top_k(sample, items, min(k, len(items)), metric)
    return rows


def _joint_embedding(system: SystemSpec, task: Component, ctx: CellContext,
                     dim: int) -> Component:
    if system.joint_embedding is not None:
        return ctx.factory.create("joint-embeddings", system.joint_embedding, fresh=True,
                                  dim=dim)
    # before 1.0 joint embeddings were registered as fusion heads with fit_pairs
    head = ctx.factory.create("fusion-heads", system.fusion_head, fresh=True, dim=dim)
    if not hasattr(head.obj, "fit_pairs"):
        raise ConfigError(f"system {system.name!r} has no joint_embedding, which task "
                          f"{task.name!r} needs (e.g. joint_embedding = {{ name = \"infonce\" }})")
    log.warning("system %r: fusion head %r used as a joint embedding; register it with "
                "register_joint_embeddings (deprecated since 1.0)", system.name, head.name)
    return dataclasses.replace(head, kind="joint-embeddings")


PIPELINES = {"fusion-head": run_fusion_cell, "joint-embedding": run_joint_embedding_cell}


def training_cost(stage_seconds: float, training: TrainingReport) -> float:
    """The train stage's cost: its wall time now, with the loop's share replaced by what
    training took over all runs, so a resumed or reloaded training still shows its real
    cost. A report without timings (NaN) leaves the stage's wall time."""
    total, now = training.seconds, training.seconds_this_run
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (total, now)):
        return stage_seconds
    return max(stage_seconds - now, 0.0) + total



def _search(index: Component, queries: np.ndarray, k: int, width: int) -> np.ndarray:
    with guard(index, "search"):
        keys, _ = validate_search(index.obj.search(queries, k), len(queries), k)
    if k < width:  # fewer items than K: pad so every K is defined
        keys = np.concatenate([keys, np.full((len(keys), width - k), -1, np.int64)], axis=1)
    return keys


def measure_search(retriever: Component, queries: np.ndarray, k: int,
                   labels: np.ndarray | None = None) -> dict:
    """Batch throughput and single-query latency of ``search`` on the test queries.

    ``labels`` go to retrievers that declare ``uses_labels`` (the oracle bound)."""
    def search(rows: slice):
        if capability(retriever.obj, "retrievers", "uses_labels"):
            return retriever.obj.search(queries[rows], k, labels=labels[rows])
        return retriever.obj.search(queries[rows], k)

    with guard(retriever, "search"):
        t0 = time.perf_counter()
        search(slice(None))
        batch_s = time.perf_counter() - t0
        latencies = []
        for row in range(min(LATENCY_QUERIES, len(queries))):
            t0 = time.perf_counter()
            search(slice(row, row + 1))
            latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "retrieval_qps": len(queries) / batch_s if batch_s > 0 else None,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
    }


def _memory_bytes(component: Component) -> int | None:
    method = getattr(component.obj, "memory_bytes", None)
    if method is None:
        return None
    with guard(component, "memory_bytes"):
        value = method()
    return None if value is None else int(value)


def _describe(*components: Component | None) -> dict:
    return {c.kind: c.describe() for c in components if c is not None}
