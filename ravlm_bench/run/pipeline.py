"""What the two cell pipelines share: the run's context, the output a pipeline hands on,
the clock of a cell's stages, and the steps both take (creating the encoders, timing
searches, describing components for provenance).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ravlm_bench.config.suite import SystemSpec
from ravlm_bench.plugin_host.contracts import TrainingReport, capability
from ravlm_bench.scoring.evaluation import ClassScores, Rankings, Resampler
from ravlm_bench.stages.components import Component, ComponentFactory, guard
from ravlm_bench.stages.execution import Local
from ravlm_bench.stages.external_knowledge import ExternalKnowledge
from ravlm_bench.stages.features import FeatureStore

LATENCY_QUERIES = 200  # single-query searches timed for the p50 / p99 latency


@dataclass
class CellContext:
    """What a cell takes from its run: the component factory, the task's features, the
    metric, the execution (one process or torchrun's ranks) and the bootstrap resampler."""

    factory: ComponentFactory
    features: FeatureStore
    metric: str
    execution: Local
    resampler: Resampler
    on_stage: Callable[[str], None] | None = None
    # trained retrieval keys, shared by the systems of a (task, seed) that name the same one
    learned_keys: dict = field(default_factory=dict)
    # the distractors last synthesised, and exact search's results over them, shared by the
    # systems that index the same items the same way (one entry: each holds N + D vectors)
    distractors: dict = field(default_factory=dict)
    # the system's external knowledge base, or None: it retrieves from the training split
    knowledge: ExternalKnowledge | None = None
    # score retrieving systems again with their retrieval corrupted (the dependence sweep)
    retrieval_dependence: bool = False
    # load built indexes from the cache, and save those built ([run] cache_indexes)
    cache_indexes: bool = False


@dataclass(frozen=True)
class PipelineOutput:
    """What a cell's pipeline hands on to the task's evaluation and the cell's record."""

    outputs: ClassScores | Rankings  # what the task's evaluate() scores
    cost: dict[str, Any]  # index build, memory, search throughput and latency
    training: TrainingReport
    components: dict[str, Any]  # kind -> the component's description (provenance)
    retrieval: dict | None = None  # retrieval_diagnostics of the test queries
    # threshold -> what each test item saw and got (for `show` and the explorer)
    explore: Callable[..., dict] | None = None
    # corruption level -> the outputs with the test queries' retrieval corrupted
    # (stages.corruption), for the retrieval dependence; None: not measured
    corrupted: dict[str, ClassScores] | None = None


class Encoders(NamedTuple):
    """A system's image and text encoders."""

    image: Component
    text: Component

    @property
    def dim(self) -> int:
        """The width of an image feature and a text feature side by side."""
        return self.image.obj.dim + self.text.obj.dim


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


def create_encoders(system: SystemSpec, ctx: CellContext) -> Encoders:
    """The system's encoders, shared with every system that names the same ones."""
    return Encoders(ctx.factory.create("image-encoders", system.image_encoder),
                    ctx.factory.create("text-encoders", system.text_encoder))


def measure_search(retriever: Component, queries: np.ndarray, k: int,
                   labels: np.ndarray | None = None) -> dict:
    """Batch throughput and single-query latency of ``search`` on the test queries.

    ``labels`` go to retrievers that declare ``uses_labels`` (the oracle bound)."""
    def search(rows: slice):
        if capability(retriever.obj, "retrievers", "uses_labels"):
            return retriever.obj.search(
                queries[rows], k, labels=None if labels is None else labels[rows])
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


def memory_bytes(component: Component) -> int | None:
    """What an index holds in memory, when its retriever says (``memory_bytes()``)."""
    method = getattr(component.obj, "memory_bytes", None)
    if method is None:
        return None
    with guard(component, "memory_bytes"):
        value = method()
    return None if value is None else int(value)


def describe(*components: Component | None) -> dict:
    """kind -> description of each component a cell used, for its provenance."""
    return {c.kind: c.describe() for c in components if c is not None}
