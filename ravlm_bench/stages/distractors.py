"""Distractors: synthesised knowledge-base items that stress a retriever at scale.

A knowledge base of a few hundred real items cannot tell an approximate index from exact
search: every HNSW setting finds the same neighbours. ``knowledge = { ..., distractors = D }``
adds D items to the index beside the N real ones (index keys N..N+D-1), made in the
retrieval key's embedding space from the real items' vectors, never encoded:

* each distractor looks like a real item (its *look-alike*, drawn uniformly among the items
  with a non-zero key vector) at cosine similarity ``c = distractor_similarity`` exactly:
  ``d = c u + sqrt(1 - c^2) z``, with z a random unit vector in the directions the real
  items leave empty (orthogonal to u and to the leading singular directions that hold
  :data:`SIGNAL_SHARE` of the items' squared length). Queries are embedded like the items,
  so to a query a distractor scores about c times its look-alike: exact search keeps
  finding the real items (on the demo world, c = 0.8 puts 0.2% of the exact top 3 on a
  distractor), while an index must pick them out of N + D vectors crowding round them;
* what a head reads of a distractor is its look-alike's picture with the text (and text
  features) of a real item naming other evidence (another item, without evidence): when an
  approximate search returns a look-alike instead of the item, the reader reads another
  entity's facts. A distractor has no label and is nobody's gold evidence.

The draws are seeded by ``distractor_seed`` alone: every seed, system and process of a run
that embeds the real items the same way indexes the same distractors. Only the items a
search returned are ever materialised as knowledge-base rows (:func:`with_retrieved`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ravlm_bench.config.knowledge import KnowledgeSpec
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import KnowledgeBase

SIGNAL_SHARE = 0.99  # of the real items' squared length: the directions distractors keep off
CHUNK = 65_536  # distractors drawn at a time (a fixed size: the draws do not depend on it)


@dataclass(frozen=True)
class Distractors:
    """The distractors of a knowledge base of ``first_key`` real items."""

    first_key: int           # N: the first distractor's index key
    look_alike: np.ndarray   # int64 (D,): the real row whose picture each one shows
    text_of: np.ndarray      # int64 (D,): the real row whose text each one carries
    vectors: np.ndarray      # float32 (D, dim): unit rows in the retrieval key's space

    def __len__(self) -> int:
        return len(self.look_alike)

    def image_ids(self) -> np.ndarray:
        """Each distractor's image id: negative and below every real item's."""
        return -(np.arange(len(self), dtype=np.int64) + self.first_key + 2)


def synthesise(spec: KnowledgeSpec, item_vectors: np.ndarray,
               evidence: list[str] | None) -> Distractors:
    """``spec.distractors`` distractors of the real items embedded as ``item_vectors``
    (unit rows, zero rows for items the key cannot see), as the module describes."""
    items = np.asarray(item_vectors, np.float64)
    n, dim = items.shape
    visible = np.flatnonzero(np.abs(items).sum(axis=1) > 0)
    if not len(visible):
        raise ConfigError(f"knowledge {spec.dataset}/{spec.split}: no item has a non-zero "
                          f"retrieval-key vector for distractors to look like")
    basis = signal_directions(items[visible])
    if len(basis) >= dim - 1:
        raise ConfigError(f"knowledge {spec.dataset}/{spec.split}: the real items fill "
                          f"{len(basis)} of the key's {dim} dimensions; distractors need "
                          f"directions the items leave empty (use a wider key)")
    rng = np.random.default_rng([spec.distractor_seed, n, dim])
    count = spec.distractors
    look_alike = visible[rng.integers(len(visible), size=count)]
    text_of = _other_items(rng, look_alike, evidence, n)
    unit = items / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
    c = float(spec.distractor_similarity)
    vectors = np.empty((count, dim), np.float32)
    for start in range(0, count, CHUNK):
        part = slice(start, min(start + CHUNK, count))
        u = unit[look_alike[part]]
        z = rng.standard_normal((len(u), dim))
        z -= (z @ basis.T) @ basis
        z -= (z * u).sum(axis=1, keepdims=True) * u
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        vectors[part] = c * u + np.sqrt(1.0 - c * c) * z
    return Distractors(n, look_alike.astype(np.int64), text_of, vectors)


def signal_directions(vectors: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning the leading singular directions of ``vectors`` that hold
    :data:`SIGNAL_SHARE` of their squared length (their mean direction included)."""
    _, singular, right = np.linalg.svd(np.asarray(vectors, np.float64), full_matrices=False)
    energy = np.cumsum(singular ** 2)
    keep = int(np.searchsorted(energy, SIGNAL_SHARE * energy[-1])) + 1
    return right[:keep]


def _other_items(rng: np.random.Generator, look_alike: np.ndarray,
                 evidence: list[str] | None, n: int) -> np.ndarray:
    """For each distractor, a real row naming other evidence than its look-alike (without
    evidence: another row), drawn uniformly; redrawn where it names the same."""
    codes = (np.unique(np.asarray(evidence, dtype=object), return_inverse=True)[1]
             if evidence is not None else np.arange(n))
    chosen = rng.integers(n, size=len(look_alike))
    for _ in range(64):  # each round keeps most draws: 64 leave none unless one code fills all
        same = np.flatnonzero(codes[chosen] == codes[look_alike])
        if not len(same):
            break
        chosen[same] = rng.integers(n, size=len(same))
    return chosen.astype(np.int64)


def index_vectors(item_vectors: np.ndarray, distractors: Distractors | None) -> np.ndarray:
    """What the index holds: the real items' vectors, then the distractors'."""
    if distractors is None:
        return item_vectors
    return np.concatenate([np.asarray(item_vectors, np.float32), distractors.vectors])


def with_retrieved(kb: KnowledgeBase, rows: np.ndarray,
                   distractors: Distractors) -> tuple[KnowledgeBase, np.ndarray]:
    """``kb`` with a row for each distractor ``rows`` hold (index keys >= N), in key order,
    and ``rows`` renumbered to match; ``index_keys`` maps every row back to its key."""
    n = distractors.first_key
    rows = np.asarray(rows, np.int64)
    hit = np.unique(rows[rows >= n])
    drawn = hit - n
    look, text = distractors.look_alike[drawn], distractors.text_of[drawn]
    labels = np.asarray(kb.labels)
    no_label = (np.zeros((len(hit), labels.shape[1]), labels.dtype) if labels.ndim == 2
                else np.full(len(hit), -1, labels.dtype))
    extended = replace(
        kb,
        image=np.concatenate([kb.image, np.asarray(kb.image)[look]]),
        text=np.concatenate([kb.text, np.asarray(kb.text)[text]]),
        labels=np.concatenate([labels, no_label]),
        image_ids=np.concatenate([kb.image_ids, distractors.image_ids()[drawn]]),
        texts=(None if kb.texts is None else [*kb.texts, *(kb.texts[i] for i in text)]),
        evidence=(None if kb.evidence is None else [*kb.evidence, *([""] * len(hit))]),
        index_keys=np.concatenate([np.arange(n, dtype=np.int64), hit]))
    renumbered = np.where(rows >= n, n + np.searchsorted(hit, rows), rows)
    return extended, renumbered


def look_alike_rows(kb: KnowledgeBase, distractors: Distractors | None) -> np.ndarray:
    """For each row of ``kb`` (as :func:`with_retrieved` extended it), the real row whose
    picture it shows: itself, or a distractor's look-alike."""
    rows = np.arange(len(kb), dtype=np.int64)
    if distractors is None or kb.index_keys is None:
        return rows
    keys = np.asarray(kb.index_keys)
    drawn = keys >= distractors.first_key
    rows[drawn] = distractors.look_alike[keys[drawn] - distractors.first_key]
    return rows
