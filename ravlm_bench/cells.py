"""One cell of a suite: a (task, system, seed) run from features to metrics.

Data flows one way: task data -> features (cached) -> retrieval -> fusion -> predictions ->
metrics. The feature stage is shared by every cell of a task (see :class:`FeatureStore`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ravlm_bench import knowledge, metrics
from ravlm_bench.components import Component, ComponentFactory, guard
from ravlm_bench.contracts import (
    ClassificationData,
    KnowledgeBase,
    RetrievalData,
    validate_proba,
    validate_search,
    validate_vectors,
)
from ravlm_bench.distributed import (
    SINGLE,
    DistContext,
    ShardedRetriever,
    all_gather_rows,
    broadcast_object,
)
from ravlm_bench.suite import SystemSpec

log = logging.getLogger(__name__)

LATENCY_QUERIES = 200  # single-query searches timed for the p50 / p99 latency


@dataclass
class CellResult:
    metrics: dict
    cost: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    predictions: dict | None = None
    per_class: dict | None = None
    components: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


class FeatureStore:
    """Encoded features of one task's splits, computed once per encoder and kept for the run.

    Features go through the on-disk cache keyed by the encoder's fingerprint and a hash of
    the dataset and the exact items, so a rerun (or another suite) never encodes twice.
    """

    def __init__(self, dataset_fingerprint: str, cache, progress: bool = True,
                 dist: DistContext = SINGLE):
        self.dataset_fingerprint = dataset_fingerprint
        self.cache = cache
        # bars only on a terminal: logs of batch jobs stay readable
        self.progress = progress and dist.is_main and sys.stderr.isatty()
        self.dist = dist
        self._memo: dict[tuple, np.ndarray] = {}

    def images(self, encoder: Component, split: str, paths: list[str]) -> np.ndarray:
        from ravlm_bench.encoding import encode_images

        return self._encode(encoder, f"{split}/images", paths, encode_images)

    def texts(self, encoder: Component, split: str, texts: list[str]) -> np.ndarray:
        from ravlm_bench.encoding import encode_texts

        return self._encode(encoder, f"{split}/texts", texts, encode_texts)

    def _encode(self, encoder: Component, split: str, items: list[str], encode) -> np.ndarray:
        def compute(part: list[str]):
            with guard(encoder, "encode"):
                return encode(encoder.obj, part, progress=self.progress)

        # items repeat images and texts (several captions, questions or pairs per image):
        # each distinct one is encoded once, then its row is repeated
        unique, rows = _unique(items)
        return self._get(encoder, split, unique, compute)[rows]

    def _get(self, encoder: Component, split: str, items: list[str], compute) -> np.ndarray:
        items_hash = hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]
        key = (encoder.name, encoder.fingerprint() or id(encoder.obj), split, items_hash)
        if key not in self._memo:
            fingerprint = encoder.fingerprint()
            dataset_key = f"{self.dataset_fingerprint}-{items_hash}"
            if self.dist.enabled:
                array = self._get_sharded(fingerprint, dataset_key, split, items, compute,
                                          encoder.obj.dim)
            else:
                array = self.cache.get_or_compute(fingerprint, dataset_key, split,
                                                  lambda: compute(items))
            with guard(encoder, "encode"):
                validate_vectors(array, len(items), encoder.obj.dim)
            self._memo[key] = array
        return self._memo[key]

    def _get_sharded(self, fingerprint, dataset_key, split, items, compute,
                     dim: int) -> np.ndarray:
        """Rank 0 reads the cache; on a miss every rank encodes its shard and rank 0 stores
        the assembled features, so nothing is encoded twice and only rank 0 writes."""
        ctx = self.dist
        cached = None
        if ctx.is_main and fingerprint is not None:
            try:
                cached = self.cache.get_or_compute(fingerprint, dataset_key, split, _miss)
            except _CacheMiss:
                cached = None
        if broadcast_object(ctx, cached is not None):
            # a hit: rank 0 holds every row, the other ranks contribute none
            width = broadcast_object(ctx, cached.shape[1] if ctx.is_main else None)
            local = cached if ctx.is_main else np.empty((0, width), np.float32)
        else:
            shard = items[ctx.shard(len(items))]
            local = compute(shard) if shard else np.empty((0, dim), np.float32)
        array = all_gather_rows(ctx, np.asarray(local, dtype=np.float32))
        if ctx.is_main and cached is None and fingerprint is not None:
            self.cache.get_or_compute(fingerprint, dataset_key, split, lambda: array)
        return array


def _unique(items: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct items in first-seen order, and each item's row among them."""
    first: dict[str, int] = {}
    rows = np.fromiter((first.setdefault(item, len(first)) for item in items), np.int64,
                       count=len(items))
    return list(first), rows


class _CacheMiss(Exception):
    pass


def _miss():
    raise _CacheMiss


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


def run_classification_cell(data: ClassificationData, system: SystemSpec, seed: int, *,
                            factory: ComponentFactory, features: FeatureStore, metric: str,
                            checkpoint_dir=None, dist: DistContext = SINGLE,
                            on_stage: Callable[[str], None] | None = None) -> CellResult:
    clock = StageClock(on_stage)
    image_encoder = factory.create("image-encoders", system.image_encoder)
    text_encoder = factory.create("text-encoders", system.text_encoder)
    splits = {role: split for role, split in
              (("train", data.train), ("val", data.val), ("test", data.test)) if split is not None}
    with clock("encode"):
        image = {r: features.images(image_encoder, r, s.image_paths) for r, s in splits.items()}
        text = {r: features.texts(text_encoder, r, s.texts) for r, s in splits.items()}

    dim = image_encoder.obj.dim + text_encoder.obj.dim
    head = factory.create("fusion-heads", system.fusion_head, fresh=True, dim=dim)
    uses_retrieval = bool(getattr(head.obj, "uses_retrieval", True))
    k = int(getattr(head.obj, "k", 10))
    kb = KnowledgeBase(image=image["train"], text=text["train"], labels=data.train.labels,
                       image_ids=data.train.image_ids)
    retriever, cost = None, {}
    with clock("index"):
        if uses_retrieval:
            if system.retriever is None:
                raise_config(f"system {system.name!r}: fusion head {head.name!r} uses "
                             f"retrieval; give the system a retriever")
            retriever = sharded(factory.create("retrievers", system.retriever, fresh=True,
                                               dim=dim, metric=metric), dist)
            build_started = time.perf_counter()
            with guard(retriever, "build"):
                knowledge.build_index(retriever.obj, kb)
            cost["index_build_s"] = time.perf_counter() - build_started
            cost["index_memory_bytes"] = _memory_bytes(retriever)

    def inputs(role: str, exclude_same_image: bool):
        split = splits[role]
        with guard(retriever or head, "search"):
            prepared = knowledge.fusion_inputs(
                image[role], text[role], retriever=retriever.obj if retriever else None, kb=kb,
                k=k, labels=split.labels, image_ids=split.image_ids,
                exclude_same_image=exclude_same_image, num_classes=len(data.classes))
        # the raw items, for heads that fine-tune the encoders end to end
        prepared.extras.update(image_paths=split.image_paths, texts=split.texts)
        return prepared

    with clock("train"):
        train_inputs = inputs("train", exclude_same_image=True)
        val_inputs = inputs("val", exclude_same_image=False) if "val" in splits else None
        with guard(head, "fit"):
            training = head.obj.fit(train_inputs, val_inputs, seed=seed,
                                    **training_kwargs(head.obj.fit, dist, checkpoint_dir)) or {}
    cost["train_s"] = training_cost(clock.timings["train_s"], training)

    with clock("evaluate"):
        test_inputs = inputs("test", exclude_same_image=False)
        test_inputs.labels = None  # a head never sees test labels
        with guard(head, "predict_proba"):
            proba = predict_sharded(head.obj, test_inputs, len(data.classes), dist)
        y_pred = proba.argmax(axis=1).astype(np.int64)
        train_counts = np.bincount(data.train.labels, minlength=len(data.classes))
        scores = metrics.classification_metrics(
            data.test.labels, y_pred, num_classes=len(data.classes), train_counts=train_counts,
            classes=data.classes, seed=seed)
        per_class = metrics.per_class_report(data.test.labels, y_pred,
                                             num_classes=len(data.classes), classes=data.classes)
        if retriever is not None:
            queries = knowledge.query_vectors(image["test"], text["test"])
            cost.update(measure_search(retriever, queries, k, labels=data.test.labels))
    return CellResult(
        metrics=scores, cost=cost, timings=clock.finish(), per_class=per_class,
        training=training,
        predictions={"y_true": data.test.labels, "y_pred": y_pred,
                     "image_ids": data.test.image_ids, "train_counts": train_counts},
        components=_describe(image_encoder, text_encoder, retriever, head),
    )


def run_retrieval_cell(data: RetrievalData, system: SystemSpec, seed: int, *,
                       factory: ComponentFactory, features: FeatureStore, metric: str,
                       ks=(1, 5, 10), checkpoint_dir=None, dist: DistContext = SINGLE,
                       on_stage: Callable[[str], None] | None = None) -> CellResult:
    clock = StageClock(on_stage)
    image_encoder = factory.create("image-encoders", system.image_encoder)
    text_encoder = factory.create("text-encoders", system.text_encoder)
    with clock("encode"):
        train_image = features.images(image_encoder, "train", data.train.image_paths)
        train_text = features.texts(text_encoder, "train", data.train.texts)
        test_image = features.images(image_encoder, "test", data.test.image_paths)
        test_text = features.texts(text_encoder, "test", data.test.texts)

    dim = image_encoder.obj.dim + text_encoder.obj.dim
    head = factory.create("fusion-heads", system.fusion_head, fresh=True, dim=dim)
    if not hasattr(head.obj, "fit_pairs"):
        raise_config(f"system {system.name!r}: fusion head {head.name!r} cannot embed images "
                     f"and texts jointly (no fit_pairs); use a joint embedding such as "
                     f"'infonce' for retrieval tasks")
    if system.retriever is None:
        raise_config(f"system {system.name!r} needs a retriever for a retrieval task")
    with clock("train"), guard(head, "fit_pairs"):
        training = head.obj.fit_pairs(
            train_image, train_text, data.train.caption_image, seed=seed,
            **training_kwargs(head.obj.fit_pairs, dist, checkpoint_dir)) or {}
        image_emb = np.ascontiguousarray(head.obj.embed_images(test_image), dtype=np.float32)
        text_emb = np.ascontiguousarray(head.obj.embed_texts(test_text), dtype=np.float32)
    cost = {"train_s": training_cost(clock.timings["train_s"], training)}

    with clock("index"):
        emb_dim = image_emb.shape[1]
        images_index = sharded(factory.create("retrievers", system.retriever, fresh=True,
                                              dim=emb_dim, metric=metric), dist)
        captions_index = sharded(factory.create("retrievers", system.retriever, fresh=True,
                                                dim=emb_dim, metric=metric), dist)
        build_started = time.perf_counter()
        with guard(images_index, "build"):
            images_index.obj.build(image_emb, np.arange(len(image_emb), dtype=np.int64))
        cost["index_build_s"] = time.perf_counter() - build_started
        cost["index_memory_bytes"] = _memory_bytes(images_index)
        with guard(captions_index, "build"):
            captions_index.obj.build(text_emb, np.arange(len(text_emb), dtype=np.int64))

    with clock("evaluate"):
        k = max(ks)
        t2i = _search(images_index, text_emb, min(k, len(image_emb)), k)
        i2t = _search(captions_index, image_emb, min(k, len(text_emb)), k)
        scores = metrics.recall_from_rankings(t2i, i2t, data.test.caption_image, ks=ks)
        cost.update(measure_search(images_index, text_emb, k=min(k, len(image_emb))))
    return CellResult(metrics=scores, cost=cost, timings=clock.finish(), training=training,
                      components=_describe(image_encoder, text_encoder, images_index, head))


def sharded(retriever: Component, dist: DistContext) -> Component:
    """Under torchrun, each rank indexes a shard of the knowledge base (ShardedRetriever)."""
    if not dist.enabled:
        return retriever
    return dataclasses.replace(retriever, obj=ShardedRetriever(retriever.obj, dist))


def training_kwargs(method, dist: DistContext, checkpoint_dir) -> dict:
    """``dist=`` (data-parallel training) and ``checkpoint_dir=`` for training methods that
    accept them; a third-party head without ``dist`` trains the same way on every rank."""
    accepted = inspect.signature(method).parameters
    kwargs = {}
    if dist.enabled and "dist" in accepted:
        kwargs["dist"] = dist
    elif dist.enabled and checkpoint_dir is not None:
        # every rank trains its own copy, so each keeps its own checkpoint
        checkpoint_dir = Path(checkpoint_dir) / f"rank-{dist.rank}"
    if checkpoint_dir is not None and "checkpoint_dir" in accepted:
        kwargs["checkpoint_dir"] = checkpoint_dir
    return kwargs


def training_cost(stage_seconds: float, training: dict) -> float:
    """The train stage's cost: its wall time now, with the loop's share replaced by what
    training took over all runs when the head reports both (``seconds``, cumulative, and
    ``seconds_this_run``), so a resumed or reloaded training still shows its real cost."""
    total, now = training.get("seconds"), training.get("seconds_this_run")
    if not all(isinstance(v, (int, float)) for v in (total, now)):
        return stage_seconds
    return max(stage_seconds - now, 0.0) + total


def predict_sharded(head, inputs, num_classes: int, dist: DistContext) -> np.ndarray:
    """Each rank predicts its share of the test items; the rows are gathered in order."""
    if not dist.enabled:
        return validate_proba(head.predict_proba(inputs), len(inputs), num_classes)
    part = dist.shard(len(inputs))
    local = slice_inputs(inputs, part)
    proba = validate_proba(head.predict_proba(local), len(local), num_classes) if len(local) \
        else np.empty((0, num_classes), np.float32)
    return all_gather_rows(dist, proba)


def slice_inputs(inputs, part: slice):
    """The rows ``part`` of a FusionInputs (the knowledge base stays whole)."""
    def cut(value):
        return value[part] if value is not None else None

    n = len(inputs)
    extras = {key: value[part] if hasattr(value, "__len__") and len(value) == n else value
              for key, value in inputs.extras.items()}
    return dataclasses.replace(
        inputs, image=inputs.image[part], text=inputs.text[part],
        neighbours=inputs.neighbours[part], neighbour_scores=inputs.neighbour_scores[part],
        labels=cut(inputs.labels), image_ids=cut(inputs.image_ids), extras=extras)


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
        if getattr(retriever.obj, "uses_labels", False):
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


def raise_config(message: str) -> None:
    from ravlm_bench.errors import ConfigError

    raise ConfigError(message)
