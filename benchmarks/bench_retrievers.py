"""Retriever throughput and recall against this machine's matrix-product rate, in one run.

    python benchmarks/bench_retrievers.py              # 100k x 384 (a few minutes)
    python benchmarks/bench_retrievers.py --full       # 100k and 1M x 384 (1M: ~10 min build)
    python benchmarks/bench_retrievers.py --n 20000    # quicker

Targets (issue 4): `exact` >= 90% of the matmul bound (N x d x queries x 2 / measured rate);
`usearch-hnsw` on clustered data: recall@10 >= 0.99 at >= 3x exact's queries/s at 100k, and
recall@10 >= 0.95 at >= 10x at 1M; the wrapper adds <= 5% over calling usearch directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from _timing import best_of, matmul_rate, square_matmuls  # benchmarks/ is on sys.path
from tabulate import tabulate

from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry


def clustered_vectors(n: int, dim: int, seed: int = 0, latent: int = 32,
                      clusters: int = 1000) -> np.ndarray:
    """Embedding-like data: a mixture of Gaussians in a low-dimensional latent space,
    projected to ``dim`` with a little isotropic noise (uniform random vectors in 384-d
    have no neighbourhood structure for any graph index to find)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, latent)).astype(np.float32)
    projection = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = centres[rng.integers(0, clusters, m)] + 0.35 * rng.normal(size=(m, latent))
        out[start:start + m] = z.astype(np.float32) @ projection
        out[start:start + m] += 0.05 * rng.normal(size=(m, dim)).astype(np.float32)
    return out



def gemm_only(vectors: np.ndarray, queries: np.ndarray) -> None:
    """The matrix products `exact` does, in its chunks and blocks, with no top-k: what it
    would cost with free selection."""
    import torch

    from ravlm_bench.scoring.ranking import exact_blocking

    base = torch.from_numpy(vectors)
    chunk, rows_per_block = exact_blocking(len(queries), len(vectors))
    out = torch.empty(chunk * rows_per_block)
    with torch.inference_mode():
        for start in range(0, len(queries), chunk):
            q = torch.from_numpy(queries[start:start + chunk])
            for first in range(0, len(base), rows_per_block):
                rows = base[first:first + rows_per_block]
                torch.mm(q, rows.T, out=out[:len(q) * len(rows)].view(len(q), len(rows)))


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    pairs = zip(found, truth, strict=True)
    hits = sum(len(set(a[a >= 0].tolist()) & set(b.tolist())) for a, b in pairs)
    return hits / (len(truth) * k)


def run_size(registry, n: int, args) -> list[list]:
    dim, k, metric = args.dim, 10, args.metric
    data = clustered_vectors(n + args.queries, dim, seed=n)
    vectors, queries = data[:n], data[n:]
    keys = np.arange(n, dtype=np.int64)
    rows = []

    exact = registry.create("retrievers", "exact", dim=dim, metric=metric)
    exact.build(vectors, keys)
    exact.search(queries[:64], k)
    truth, _ = exact.search(queries, k)
    # Interleaved best-of-3 against a bare GEMM of the same shapes and square matrix
    # products of the same FLOPs, so that load from other processes hits all three alike.
    square, square_flops = square_matmuls(2.0 * n * dim * len(queries))
    exact_s, gemm_s, square_s = best_of([lambda: exact.search(queries, k),
                                         lambda: gemm_only(exact._index.items, queries), square])
    exact_qps, gemm_qps = len(queries) / exact_s, len(queries) / gemm_s
    bound_qps = square_flops / square_s / (2.0 * n * dim)
    rows.append([f"{n:,}", "exact", "", f"{exact_qps:,.0f}", "1.000", "1.0x",
                 f"{exact_qps / bound_qps:.2f} of square-matmul bound ({bound_qps:,.0f} q/s); "
                 f"{exact_qps / gemm_qps:.2f} of a bare GEMM of its shapes "
                 f"({gemm_qps:,.0f} q/s)",
                 f"{exact.memory_bytes() / 2**20:.0f} MiB"])
    peer = faiss_flat_row(exact, queries, k, exact_qps, truth)
    if peer:
        rows.append([f"{n:,}", *peer])

    for dtype in args.dtypes:
        hnsw = registry.create("retrievers", "usearch-hnsw", dim=dim, metric=metric,
                               dtype=dtype, connectivity=args.connectivity,
                               expansion_add=args.expansion_add, build_threads=0)
        start = time.perf_counter()
        hnsw.build(vectors, keys)
        build_s = time.perf_counter() - start
        rows.append([f"{n:,}", f"usearch-hnsw {dtype}", "build", "", "", "",
                     f"{build_s:.1f} s, connectivity {args.connectivity}, "
                     f"expansion_add {args.expansion_add}",
                     f"{hnsw.memory_bytes() / 2**20:.0f} MiB"])
        for expansion in args.expansions:
            hnsw.expansion_search = expansion
            hnsw.search(queries[:64], k)
            start = time.perf_counter()
            found, _ = hnsw.search(queries, k)
            qps = len(queries) / (time.perf_counter() - start)
            rows.append([f"{n:,}", f"usearch-hnsw {dtype}", expansion, f"{qps:,.0f}",
                         f"{recall_at(found, truth):.4f}", f"{qps / exact_qps:.1f}x", "", ""])
        hnsw.expansion_search = 64
        rows.append([f"{n:,}", f"usearch-hnsw {dtype}", "wrapper overhead", "", "", "",
                     wrapper_overhead(hnsw, queries, k), ""])
    return rows


def faiss_flat_row(exact, queries: np.ndarray, k: int, exact_qps: float,
                   truth: np.ndarray) -> list | None:
    """The peer the issue names: faiss's flat index on the same vectors and threads, timed
    interleaved with `exact` (skipped when faiss-cpu is not installed)."""
    try:
        import faiss
    except ImportError:
        return None
    import torch

    faiss.omp_set_num_threads(torch.get_num_threads())
    vectors = exact._index.items  # already normalised for cos
    if exact.metric == "l2sq":
        index = faiss.IndexFlatL2(vectors.shape[1])
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True) if exact.metric == "cos" \
        else queries
    q = np.ascontiguousarray(q, dtype=np.float32)
    _, found = index.search(q, k)
    faiss_s, exact_s = best_of([lambda: index.search(q, k), lambda: exact.search(queries, k)])
    qps = len(queries) / faiss_s
    return [f"faiss {faiss.__version__} IndexFlat (peer)", "", f"{qps:,.0f}",
            f"{recall_at(found, truth):.4f}", f"{qps / exact_qps:.2f}x",
            f"exact / faiss flat, interleaved: {faiss_s / exact_s:.2f}", ""]


def wrapper_overhead(hnsw, queries: np.ndarray, k: int, repeats: int = 7) -> str:
    """Best-of-N time of the retriever's search over usearch's own Index.search.

    The two are interleaved so that load from other processes hits both alike.
    """
    index = hnsw._index  # the very index the wrapper searches
    direct, wrapped = [], []
    for _ in range(repeats):
        for times, fn in ((direct, lambda: index.search(queries, k, threads=hnsw.threads)),
                          (wrapped, lambda: hnsw.search(queries, k))):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    best_direct, best_wrapped = min(direct), min(wrapped)
    return (f"{best_wrapped / best_direct - 1:+.1%} over Index.search "
            f"(expansion {hnsw.expansion_search}, {best_direct * 1e3:.0f} ms direct)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="100k and 1M vectors")
    parser.add_argument("--n", type=int, action="append", help="database sizes")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--metric", default="cos", choices=["cos", "ip", "l2sq"])
    parser.add_argument("--dtypes", nargs="+", default=["f16", "f32"])
    parser.add_argument("--connectivity", type=int, default=16)
    parser.add_argument("--expansion-add", type=int, default=128)
    parser.add_argument("--expansions", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    args = parser.parse_args(argv)
    sizes = args.n or ([100_000, 1_000_000] if args.full else [100_000])
    logging.basicConfig(level=logging.ERROR)

    registry = Registry(get_plugin_manager())
    rate = matmul_rate()
    import torch
    import usearch

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), usearch "
          f"{usearch.__version__}; fp32 matmul {rate / 1e9:.0f} GFLOP/s at the start (the "
          f"bounds below time their own, interleaved); metric {args.metric}, d={args.dim}, "
          f"{args.queries} queries, recall@10 against exact")
    rows = []
    for n in sizes:
        rows += run_size(registry, n, args)
    print(tabulate(rows, headers=["N", "retriever", "expansion", "queries/s", "recall@10",
                                  "vs exact", "notes", "memory"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
