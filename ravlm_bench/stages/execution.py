"""How a cell's steps run: in one process (:class:`Local`) or across the ranks torchrun
started (:class:`Distributed`, which splits the retrieval queries and the test predictions
across ranks and gathers the rows (every rank holds the whole index, so an approximate
index is the one-process index; a retriever with ``shard_index = true`` splits the index
instead), passes ``dist=`` to heads that train data-parallel, lets
rank 0 open datasets and decode images first, and makes every rank agree on each cell's
outcome). The cell pipelines call this one object instead of branching on the process
count; the feature stage (:mod:`.features`) shards encoding with the distributed context
itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ravlm_bench.config.suite import SHARD_INDEX
from ravlm_bench.foundation.distributed import (
    SINGLE,
    DistContext,
    ReplicatedRetriever,
    ShardedRetriever,
    all_gather_rows,
    broadcast_object,
    gather_errors,
    rank_failure,
)
from ravlm_bench.foundation.errors import RavlmError
from ravlm_bench.plugin_host.contracts import capability, validate_proba
from ravlm_bench.stages.components import Component

T = TypeVar("T")


class Local:
    """One process: every step runs as it is."""

    dist: DistContext = SINGLE
    is_main = True
    world_size = 1

    def main_first(self, make: Callable[[], T]) -> T:
        """``make()``; under torchrun rank 0 first (it writes caches the others read)."""
        return make()

    def main_first_value(self, compute: Callable[[], T]) -> T:
        """``compute()`` once, by rank 0 under torchrun, its value shared with every rank
        (work that every rank would repeat identically, such as decoding every image)."""
        return compute()

    def retriever(self, component: Component) -> Component:
        """The retriever to index the knowledge base with."""
        return component

    def predict(self, head: Any, inputs, width: int) -> np.ndarray:
        """The head's scores for every row of ``inputs``, checked: float32 (n, width)."""
        return validate_proba(head.predict_proba(inputs), len(inputs), width)

    def training_kwargs(self, obj: Any, kind: str, checkpoint_dir: Path | None) -> dict:
        """The keywords a training method gets, as its declared capabilities allow."""
        if checkpoint_dir is not None and capability(obj, kind, "checkpoints"):
            return {"checkpoint_dir": checkpoint_dir}
        return {}

    def agree_on_outcome(self, label: str, error: BaseException | None) -> None:
        """Every rank must see the same outcome of a cell (nothing to agree on alone)."""


class Distributed(Local):
    """The ranks of a torchrun job: shards, gathers, and rank 0 alone writes."""

    def __init__(self, dist: DistContext):
        self.dist = dist
        self.is_main = dist.is_main
        self.world_size = dist.world_size

    def main_first(self, make: Callable[[], T]) -> T:
        # rank 0 first: it generates the demo world and fills the parsed-dataset cache, which
        # the other ranks then read instead of racing to write it
        value = self._on_main(make, share=False)
        return value if self.is_main else make()

    def main_first_value(self, compute: Callable[[], T]) -> T:
        return self._on_main(compute, share=True)

    def _on_main(self, compute: Callable[[], T], share: bool):
        """``compute()`` on rank 0; its failure raised on every rank alike, and its value
        sent to the others when ``share``."""
        value, error = None, None
        if self.is_main:
            try:
                value = compute()
            except Exception as exc:
                error = exc
        shared, failed = broadcast_object(self.dist,
                                          (value if share else None, _report(error)))
        if error is not None:
            raise error
        if failed is not None:
            raise ReplayedError(*failed)  # the same failure, so ranks agree on it
        return value if self.is_main else shared

    def retriever(self, component: Component) -> Component:
        if component.params.get(SHARD_INDEX):
            # each rank indexes a shard of the knowledge base; searches merge every shard's
            # top-k (exact search: the same results; approximate or random: other results)
            return dataclasses.replace(component, obj=ShardedRetriever(component.obj, self.dist))
        # every rank indexes the whole knowledge base and searches its share of the queries
        return dataclasses.replace(component, obj=ReplicatedRetriever(component.obj, self.dist))

    def predict(self, head: Any, inputs, width: int) -> np.ndarray:
        part = self.dist.shard(len(inputs))
        local = slice_inputs(inputs, part)
        proba = (validate_proba(head.predict_proba(local), len(local), width) if len(local)
                 else np.empty((0, width), np.float32))
        return all_gather_rows(self.dist, proba)

    def training_kwargs(self, obj: Any, kind: str, checkpoint_dir: Path | None) -> dict:
        kwargs: dict[str, Any] = {}
        if capability(obj, kind, "data_parallel"):
            kwargs["dist"] = self.dist
        elif checkpoint_dir is not None:
            # every rank trains its own copy, so each keeps its own checkpoint
            checkpoint_dir = Path(checkpoint_dir) / f"rank-{self.dist.rank}"
        if checkpoint_dir is not None and capability(obj, kind, "checkpoints"):
            kwargs["checkpoint_dir"] = checkpoint_dir
        return kwargs

    def agree_on_outcome(self, label: str, error: BaseException | None) -> None:
        """A cell that failed the same way on every rank (a broken plugin, bad data) is a
        failed cell like any other; a failure on some ranks only stops the run, naming each
        failed rank, on every rank."""
        messages = gather_errors(self.dist, error)
        if any(m is not None for m in messages) and len(set(messages)) > 1:
            raise rank_failure(label, messages)


def execution_for(dist: DistContext) -> Local:
    return Distributed(dist) if dist.enabled else Local()


class ReplayedError(RavlmError):
    """Rank 0's failure, raised again on the other ranks with the very same message; it
    stops the run on every rank when the original would (``stops_run``)."""

    def __init__(self, message: str, stops_run: bool = False):
        super().__init__(message)
        self.stops_run = stops_run


def stops_run(exc: BaseException) -> bool:
    """Bad data or configuration found while preparing a task stops the whole run with
    exit 2 before any encoding, instead of failing each of its cells; a plugin that broke
    (ComponentError) fails only its cells."""
    from ravlm_bench.foundation.errors import ConfigError, DataError

    return isinstance(exc, (ConfigError, DataError)) or getattr(exc, "stops_run", False)


def _report(error: BaseException | None) -> tuple[str, bool] | None:
    return None if error is None else (one_line(error), stops_run(error))


def one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, RavlmError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def slice_inputs(inputs, part: slice):
    """The rows ``part`` of a FusionInputs (the knowledge base stays whole)."""
    def cut(value):
        return value[part] if value is not None else None

    return dataclasses.replace(
        inputs, image=inputs.image[part], text=inputs.text[part],
        neighbours=inputs.neighbours[part], neighbour_scores=inputs.neighbour_scores[part],
        labels=cut(inputs.labels), image_ids=cut(inputs.image_ids),
        image_paths=cut(inputs.image_paths), texts=cut(inputs.texts))
