"""torch.distributed for the harness: process groups, shards, gathers and rank failures.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_distributed` joins the process group:
NCCL where GPUs exist, gloo on CPUs. Outside it everything degrades to one process and the
helpers here are no-ops, so single-process code paths need no special case. Besides the
collectives, :func:`gather_errors` and :func:`rank_failure` turn a failure on some ranks
into one error every rank raises, and :class:`ShardedRetriever` splits a knowledge base
across the ranks and merges their top-k lists (:func:`merge_topk`) into what one retriever
over all of it returns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from ravlm_bench.foundation.errors import RavlmError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600


class RankFailure(RavlmError):
    """Another rank (or this one) failed; raised on every rank so none waits forever."""

    exit_code = 1


@dataclass(frozen=True)
class DistContext:
    """This process's place among the ranks (one rank, no backend, outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"
    # A separate gloo group for failure reports: a rank that failed waits there, never in a
    # data collective where it could be matched with another rank's unrelated gather.
    control_group: Any = field(default=None, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (sizes differ by at most one)."""
        start, stop = shard_bounds(n, self.rank, self.world_size)
        return slice(start, stop)


SINGLE = DistContext()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous share of ``n`` items."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def init_distributed(timeout_s: float | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment, or stay single."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    timeout = timedelta(seconds=timeout_s or float(os.environ.get(
        "RAVLM_BENCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    # A rank that failed waits in the control group while the others may still wait out a
    # data collective's timeout: it must outwait them to hear their side.
    control = dist.new_group(backend="gloo", timeout=2 * timeout + timedelta(seconds=30))
    log.info("rank %d of %d joined (%s, %s)", rank, world_size, backend, device)
    return DistContext(rank, world_size, local_rank, backend, device, control)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (nothing to do outside torchrun)."""
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_gather_rows(ctx: DistContext, array: np.ndarray) -> np.ndarray:
    """Concatenate every rank's rows, in rank order (ranks may hold different row counts)."""
    if not ctx.enabled:
        return array
    import torch
    import torch.distributed as dist

    local = torch.from_numpy(np.ascontiguousarray(array)).to(ctx.device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, torch.tensor([len(array)], dtype=torch.int64, device=ctx.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *array.shape[1:]), dtype=local.dtype, device=ctx.device)
    padded[: len(array)] = local
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return np.concatenate([p[: int(s.item())].cpu().numpy() for p, s in zip(parts, sizes,
                                                                               strict=True)])


def all_gather_same_shape(ctx: DistContext, array: np.ndarray) -> np.ndarray:
    """Stack every rank's array (all of one shape), rank order first: (world, *shape)."""
    import torch
    import torch.distributed as dist

    local = torch.from_numpy(np.ascontiguousarray(array)).to(ctx.device)
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local)
    return torch.stack(parts).cpu().numpy()


def broadcast_object(ctx: DistContext, value: Any = None, src: int = 0) -> Any:
    """``value`` as rank ``src`` holds it, on every rank (picklable objects); outside
    torchrun, ``value`` itself. (Typed ``Any``: the other ranks pass None, or nothing, and
    get rank ``src``'s value back.)"""
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_errors(ctx: DistContext, error: BaseException | None) -> list[str | None]:
    """Every rank's one-line error (None where the rank succeeded), on every rank."""
    mine = None if error is None else " ".join(_error_text(error).split())
    if not ctx.enabled:
        return [mine]
    import torch.distributed as dist

    messages: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(messages, mine, group=ctx.control_group)
    return messages


def rank_failure(stage: str, messages: list[str | None]) -> RankFailure:
    """The error every rank raises when ``stage`` failed on some: each failed rank named
    with its message (``messages`` as :func:`gather_errors` returns them)."""
    failed = [(rank, msg) for rank, msg in enumerate(messages) if msg is not None]
    detail = "; ".join(f"rank {rank}: {msg}" for rank, msg in failed)
    return RankFailure(f"{stage} failed on {len(failed)} of {len(messages)} ranks: {detail}")


def _error_text(error: BaseException) -> str:
    return str(error) if isinstance(error, RavlmError) else f"{type(error).__name__}: {error}"


def merge_topk(keys: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists laid side by side ((m, shards*k)) into one top-k.

    Equal scores come by ascending key, so when each shard keeps the lowest keys of a tie
    at its k-th place, the merge returns what one retriever over every shard returns.
    Padding (-1 keys, and any score of -inf) sorts last and comes back as -1.
    """
    ranked = np.where(keys >= 0, scores, -np.inf)
    order = np.lexsort((keys, -ranked), axis=1)[:, :k]
    merged_keys = np.take_along_axis(keys, order, axis=1)
    merged_scores = np.take_along_axis(scores, order, axis=1)
    merged_keys[np.take_along_axis(ranked, order, axis=1) == -np.inf] = -1
    return merged_keys.astype(np.int64), merged_scores.astype(np.float32)


class ReplicatedRetriever:
    """A retriever whose whole knowledge base every rank indexes; the queries are split.

    The default under torchrun: every rank builds the same index from the same full
    ``vectors``/``keys`` (a deterministic build gives the same graph), and :meth:`search`
    (called with the same queries on every rank) searches the rank's share of the queries
    and gathers every rank's rows. An approximate index is then the very index one process
    builds, so every number is the one-process number; the index's memory is one copy's.
    """

    def __init__(self, local: Any, ctx: DistContext) -> None:
        self.local, self.ctx = local, ctx
        self.uses_labels = bool(getattr(local, "uses_labels", False))
        self.uses_query_keys = bool(getattr(local, "uses_query_keys", False))

    def build(self, vectors: np.ndarray, keys: np.ndarray, **kwargs: np.ndarray) -> None:
        self.local.build(vectors, keys, **kwargs)

    def search(self, queries: np.ndarray, k: int, **kwargs: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        if not self.ctx.enabled:
            whole: tuple[np.ndarray, np.ndarray] = self.local.search(queries, k, **kwargs)
            return whole
        part = self.ctx.shard(len(queries))
        if part.stop > part.start:
            keys, scores = self.local.search(queries[part], k,
                                             **{n: v[part] for n, v in kwargs.items()})
        else:
            keys, scores = np.empty((0, k), np.int64), np.empty((0, k), np.float32)
        # keys are row numbers, exact in float64 below 2**53; one collective for both
        packed = np.concatenate([keys, scores], axis=1, dtype=np.float64)
        gathered = all_gather_rows(self.ctx, packed)
        return gathered[:, :k].astype(np.int64), gathered[:, k:].astype(np.float32)

    def __getattr__(self, name: str) -> Any:
        # the optional contract methods exist exactly when the local retriever has them
        if name in ("fingerprint", "memory_bytes"):
            return getattr(self.local, name)
        raise AttributeError(name)


class ShardedRetriever:
    """A retriever whose knowledge base is split across ranks (a suite's
    ``shard_index = true``: each process holds 1/world of the index).

    Every rank passes the same full ``vectors``/``keys`` to :meth:`build` and indexes only
    its shard; :meth:`search` (called with the same queries on every rank) searches the
    local shard, gathers every rank's top-k and merges them, so a sharded exact search
    returns what the unsharded one returns. A sharded approximate index is another index
    (one graph per shard), and random draws come from each shard's items: their numbers
    depend on the number of processes, which the fingerprint says.
    """

    def __init__(self, local: Any, ctx: DistContext) -> None:
        self.local, self.ctx = local, ctx
        self.uses_labels = bool(getattr(local, "uses_labels", False))
        self.uses_query_keys = bool(getattr(local, "uses_query_keys", False))

    def build(self, vectors: np.ndarray, keys: np.ndarray, **kwargs: np.ndarray) -> None:
        part = self.ctx.shard(len(keys))
        extra = {name: value[part] for name, value in kwargs.items()}
        self.local.build(vectors[part], keys[part], **extra)

    def search(self, queries: np.ndarray, k: int, **kwargs: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        keys, scores = self.local.search(queries, k, **kwargs)
        if not self.ctx.enabled:
            return keys, scores
        # One collective per search: keys (row numbers, exact in float64 below 2**53) and
        # scores travel together, and every rank's block has the same (m, k) shape.
        packed = np.concatenate([keys, scores], axis=1, dtype=np.float64)
        gathered = all_gather_same_shape(self.ctx, packed)  # (world, m, 2k)
        all_keys = np.concatenate(list(gathered[:, :, :k]), axis=1).astype(np.int64)
        return merge_topk(all_keys, np.concatenate(list(gathered[:, :, k:]), axis=1), k)

    def __getattr__(self, name: str) -> Any:
        # the optional contract methods exist exactly when the local retriever has them
        if name == "fingerprint":
            local_fingerprint = getattr(self.local, name)
            return lambda: f"{local_fingerprint()}|sharded over {self.ctx.world_size} processes"
        if name == "memory_bytes":
            local_bytes = getattr(self.local, name)
            return lambda: self._total_bytes(local_bytes())
        raise AttributeError(name)

    def _total_bytes(self, local: int | None) -> int | None:
        """The whole index's memory: every rank's shard (a collective; None if any rank
        cannot tell)."""
        if not self.ctx.enabled:
            return local
        value = np.array([-1 if local is None else int(local)], dtype=np.int64)
        shards = all_gather_same_shape(self.ctx, value).ravel()
        return None if (shards < 0).any() else int(shards.sum())
