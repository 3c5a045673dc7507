"""From queries and a knowledge base to :class:`FusionInputs`: the retrieval stage of a run.

The knowledge base is the task's training split or the system's external one. Queries and
knowledge-base items are embedded the same way, by the system's retrieval key
(:class:`RetrievalKey`: the image, the text, both side by side, or both in a trained joint
embedding), always as unit vectors; index keys are knowledge-base row numbers. Heads get one
kind of score whatever the suite's metric: the cosine similarity of query and item
(:func:`as_similarity`). During training, :func:`retrieve` with ``exclude_same_image`` never
returns an item showing the query's own image (leave-one-out by image id, not by row: the
other captions or questions of the same image would leak its label).
:func:`retrieval_diagnostics` says what retrieval found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import (
    FusionInputs,
    KnowledgeBase,
    capability,
    validate_search,
)
from ravlm_bench.stages.distractors import Distractors, index_vectors, with_retrieved

log = logging.getLogger(__name__)

SEARCH_BATCH = 4096  # queries per search call: bounds an exact retriever's score matrix


class Neighbours(NamedTuple):
    """Each query's top-k knowledge-base rows, best first (int64 (n, k), -1 pads a query
    with fewer results), and their scores (float32 (n, k))."""

    rows: np.ndarray
    scores: np.ndarray


def query_vectors(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """L2-normalised image and text features side by side, scaled to unit length.

    Each half is normalised on its own so neither modality dominates the cosine similarity;
    the ``1/sqrt(2)`` makes the whole vector unit length. Zero rows stay zero.
    """
    image = np.asarray(image, dtype=np.float32)
    text = np.asarray(text, dtype=np.float32)
    if image.ndim != 2 or text.ndim != 2 or len(image) != len(text):
        raise ConfigError(f"query_vectors needs image (n, d) and text (n, d) features with the "
                          f"same n, got shapes {image.shape} and {text.shape}")
    halves = [_unit_rows(image), _unit_rows(text)]
    return (np.concatenate(halves, axis=1) / np.float32(np.sqrt(2.0))).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


@dataclass(frozen=True)
class RetrievalKey:
    """What a system searches with: ``"image"``, ``"text"``, ``"image+text"`` (each half
    unit length, side by side: :func:`query_vectors`) or a trained joint embedding's name,
    with ``embedding`` the trained object (image and text embedded, then side by side)."""

    name: str = "image+text"
    embedding: Any = field(default=None, compare=False)  # a trained JointEmbedding

    def vectors(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Unit-length search vectors of (image, text) features."""
        if self.name == "image":
            return _unit_rows(np.asarray(image, np.float32))
        if self.name == "text":
            return _unit_rows(np.asarray(text, np.float32))
        if self.name == "image+text":
            return query_vectors(image, text)
        if self.embedding is None:
            raise ConfigError(f"retrieval key {self.name!r} is a joint embedding that was "
                              f"not trained")
        return query_vectors(self.embedding.embed_images(np.asarray(image, np.float32)),
                             self.embedding.embed_texts(np.asarray(text, np.float32)))


IMAGE_AND_TEXT = RetrievalKey()


def as_similarity(scores: np.ndarray, metric: str) -> np.ndarray:
    """A retriever's scores as the cosine similarity heads read. Search vectors are unit
    length, so ``ip`` already is one and ``l2sq``'s ``-|q - v|^2 = 2 cos - 2``."""
    if metric == "l2sq":
        return (np.float32(1) + scores / np.float32(2)).astype(np.float32)
    return scores


@dataclass(frozen=True)
class EvidenceCodes:
    """Gold evidence as the integer labels a label-using retriever (the oracle) matches, for
    a knowledge base whose items name their evidence (a passage's entity): each distinct
    evidence id is a code; a query's code is its gold evidence's, -1 where it names none or
    the knowledge base does not hold it."""

    index: dict[str, int]

    @classmethod
    def of(cls, kb: KnowledgeBase) -> EvidenceCodes | None:
        """The codes of ``kb``'s evidence ids; None when its items name none."""
        if kb.evidence is None or not any(kb.evidence):
            return None
        return cls({e: i for i, e in enumerate(sorted({e for e in kb.evidence if e}))})

    def codes(self, evidence: list[str] | None, n: int) -> np.ndarray:
        """int64 codes of ``evidence`` (``n`` items; None: all -1)."""
        if evidence is None:
            return np.full(n, -1, np.int64)
        return np.array([self.index.get(e, -1) if e else -1 for e in evidence], np.int64)


def build_index(retriever, kb: KnowledgeBase, key: RetrievalKey = IMAGE_AND_TEXT,
                codes: EvidenceCodes | None = None, distractors: Distractors | None = None,
                build=None) -> np.ndarray:
    """Add every knowledge-base item to ``retriever``, embedded by ``key``; its keys are row
    numbers 0..N-1, then N.. for the ``distractors`` (:mod:`ravlm_bench.stages.distractors`).

    A retriever with ``uses_labels = True`` (the attribution retrievers) also gets the
    knowledge base's labels, or with ``codes`` its items' evidence codes (a distractor has
    neither: -1). ``build(vectors, keys)`` replaces ``retriever.build`` for a retriever that
    does not use labels (the runner's index cache). Returns the vectors indexed.
    """
    vectors = index_vectors(key.vectors(kb.image, kb.text), distractors)
    keys = np.arange(len(vectors), dtype=np.int64)
    if capability(retriever, "retrievers", "uses_labels"):
        labels = _labels(codes.codes(kb.evidence, len(kb)) if codes is not None else kb.labels)
        if distractors is not None and labels is not None:
            labels = np.concatenate([labels, np.full((len(distractors), *labels.shape[1:]),
                                                     -1 if labels.ndim == 1 else 0,
                                                     labels.dtype)])
        retriever.build(vectors, keys, labels=labels)
    else:
        (build or retriever.build)(vectors, keys)
    return vectors


def retrieve(
    retriever,
    queries: np.ndarray,
    k: int,
    *,
    query_image_ids: np.ndarray | None = None,
    kb_image_ids: np.ndarray | None = None,
    exclude_same_image: bool = False,
    labels: np.ndarray | None = None,
    metric: str = "cos",
    query_keys: np.ndarray | None = None,
) -> Neighbours:
    """The top-``k`` knowledge-base rows of each query, with their similarities:
    :func:`as_similarity` of the retriever's scores under ``metric`` (0 for padding).

    Best first; ``-1`` rows (score 0) pad queries with fewer than ``k`` results. With
    ``exclude_same_image`` a neighbour showing the query's own image is dropped: the search
    over-fetches by the number of knowledge-base rows sharing that image and fetches more
    (doubling) while an approximate retriever leaves a query short. ``labels`` are the
    queries' labels, passed to retrievers with ``uses_labels = True``; ``query_keys`` the
    queries' identities (:func:`query_keys`), passed to those with ``uses_query_keys``.
    Raises :class:`~ravlm_bench.plugin_host.contracts.ContractViolation` if the retriever breaks the
    search contract.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(queries)
    if k <= 0 or n == 0:
        return Neighbours(np.full((n, max(k, 0)), -1, np.int64),
                          np.zeros((n, max(k, 0)), np.float32))
    labels = _labels(labels)
    if not exclude_same_image:
        rows, scores = _search(retriever, queries, k, labels, query_keys)
        scores = as_similarity(scores, metric)
        return Neighbours(rows, np.where(rows >= 0, scores, np.float32(0)).astype(np.float32))

    if query_image_ids is None or kb_image_ids is None:
        raise ConfigError("retrieve(exclude_same_image=True) needs query_image_ids and "
                          "kb_image_ids to know which neighbours show the query's own image")
    query_image_ids = np.asarray(query_image_ids, dtype=np.int64)
    kb_image_ids = np.asarray(kb_image_ids, dtype=np.int64)
    size = len(kb_image_ids)
    out_rows = np.full((n, k), -1, np.int64)
    out_scores = np.zeros((n, k), np.float32)
    # An exact retriever needs k + (rows showing the query's image) results; fetch that first.
    ids, counts = np.unique(kb_image_ids, return_counts=True)
    same = np.zeros(n, np.int64)
    if len(ids):
        pos = np.clip(np.searchsorted(ids, query_image_ids), 0, len(ids) - 1)
        match = ids[pos] == query_image_ids
        same[match] = counts[pos[match]]
    pending = np.arange(n)
    fetch = min(k + int(same.max(initial=0)), size)
    while len(pending) and fetch > 0:
        sub_labels = labels[pending] if labels is not None else None
        sub_keys = query_keys[pending] if query_keys is not None else None
        rows, scores = _search(retriever, queries[pending], fetch, sub_labels, sub_keys)
        if (rows >= size).any():
            raise ConfigError(f"retriever returned key {int(rows.max())} but the knowledge base "
                              f"has {size} rows; build it with build_index")
        keep = rows >= 0
        keep[keep] = kb_image_ids[rows[keep]] != np.repeat(query_image_ids[pending],
                                                            keep.sum(axis=1))
        rank = np.cumsum(keep, axis=1)  # 1-based slot of each kept neighbour
        r, c = np.nonzero(keep & (rank <= k))
        out_rows[pending[r], rank[r, c] - 1] = rows[r, c]
        out_scores[pending[r], rank[r, c] - 1] = as_similarity(scores[r, c], metric)
        if fetch >= size:
            break  # every item was searched: what is missing does not exist
        pending = pending[rank[:, -1] < k]
        fetch = min(fetch * 2, size)
    return Neighbours(out_rows, out_scores)


def _labels(labels: np.ndarray | None) -> np.ndarray | None:
    """Single labels as int64; multi-hot label rows as they are."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    return labels.astype(np.int64) if labels.ndim == 1 else labels


def _search(retriever, queries: np.ndarray, k: int, labels: np.ndarray | None,
            query_keys: np.ndarray | None = None) -> Neighbours:
    """The retriever's raw results (keys and scores as it returns them), in batches."""
    uses_labels = capability(retriever, "retrievers", "uses_labels")
    if uses_labels and labels is None:
        raise ConfigError(f"retriever {type(retriever).__name__} needs the queries' labels "
                          f"(uses_labels = True); pass labels= to retrieve / fusion_inputs")
    keyed = query_keys is not None and capability(retriever, "retrievers", "uses_query_keys")
    rows, scores = [], []
    for start in range(0, len(queries), SEARCH_BATCH):
        batch = slice(start, start + SEARCH_BATCH)
        chunk = queries[batch]
        extra: dict[str, np.ndarray] = {}
        if labels is not None and uses_labels:
            extra["labels"] = labels[batch]
        if keyed and query_keys is not None:
            extra["query_keys"] = query_keys[batch]
        found, found_scores = validate_search(retriever.search(chunk, k, **extra), len(chunk), k)
        rows.append(found)
        scores.append(found_scores)
    return Neighbours(np.concatenate(rows), np.concatenate(scores))


def query_keys(image_ids: np.ndarray) -> np.ndarray:
    """Each query item's identity from its image id and its place among the items of that
    image (a question, a caption): ``image_id * 4096 + occurrence`` (occurrences past
    4,095 wrap), int64. The same for an item whatever the batching, sharding or number
    of processes, and distinct for the items of one image."""
    ids = np.asarray(image_ids, np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1]
    occurrence = np.empty(len(ids), np.int64)
    occurrence[order] = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    return ids * 4096 + occurrence % 4096


def fusion_inputs(
    image: np.ndarray,
    text: np.ndarray,
    *,
    retriever,
    kb: KnowledgeBase,
    k: int,
    labels: np.ndarray | None = None,
    image_ids: np.ndarray | None = None,
    exclude_same_image: bool = False,
    num_classes: int | None = None,
    key: RetrievalKey = IMAGE_AND_TEXT,
    metric: str = "cos",
    retriever_labels: np.ndarray | None = None,
    distractors: Distractors | None = None,
) -> FusionInputs:
    """Queries with their top-``k`` neighbours in ``kb`` (an index built by
    :func:`build_index` with the same ``key``), scored as cosine similarities.

    ``retriever=None`` (a head that does not use retrieval) gives empty ``(n, 0)`` neighbour
    arrays. ``exclude_same_image=True`` is for training queries drawn from ``kb`` itself.
    ``num_classes`` defaults to one more than the largest label seen. ``retriever_labels``
    replace ``labels`` as what a label-using retriever gets (evidence codes). With
    ``distractors`` in the index, the inputs' knowledge base is ``kb`` with a row for each
    distractor retrieved (:func:`~ravlm_bench.stages.distractors.with_retrieved`).
    """
    image = np.asarray(image, dtype=np.float32)
    text = np.asarray(text, dtype=np.float32)
    n = len(image)
    labels = _labels(labels)
    if image_ids is not None:
        image_ids = np.asarray(image_ids, dtype=np.int64)
    if retriever is None or k <= 0:
        rows, scores = np.empty((n, 0), np.int64), np.empty((n, 0), np.float32)
    else:
        kb_image_ids = (kb.image_ids if distractors is None
                        else np.concatenate([kb.image_ids, distractors.image_ids()]))
        rows, scores = retrieve(
            retriever, key.vectors(image, text), k, query_image_ids=image_ids,
            kb_image_ids=kb_image_ids, exclude_same_image=exclude_same_image,
            labels=labels if retriever_labels is None else _labels(retriever_labels),
            metric=metric, query_keys=query_keys(image_ids) if image_ids is not None else None)
        if distractors is not None:
            kb, rows = with_retrieved(kb, rows, distractors)
    if num_classes is None:
        seen = [np.asarray(kb.labels).max(initial=-1)]
        if labels is not None:
            seen.append(labels.max(initial=-1))
        num_classes = int(max(seen)) + 1
    return FusionInputs(image=image, text=text, neighbours=rows, neighbour_scores=scores,
                        knowledge=kb, num_classes=int(num_classes), labels=labels,
                        image_ids=image_ids)


# ---------------------------------------------------------------------------------------
# What retrieval found
# ---------------------------------------------------------------------------------------

DIAGNOSTIC_QUERIES = 1000  # test queries an approximate retriever is checked against exact


def retrieval_diagnostics(inputs: FusionInputs, query_labels: np.ndarray | None,
                          exact_rows: np.ndarray | None = None, *,
                          answers: list[list[str]] | None = None,
                          evidence: list[str] | None = None) -> dict[str, float | None]:
    """What the test queries' neighbours were.

    * ``label_precision_at_k``: the share of the k neighbour slots (padding counts as a miss)
      holding an item whose label equals the query's (multi-label: shares one); None
      without labels on both sides (an external knowledge base has none);
    * ``recall_vs_exact``: the share of exact search's top-k (index keys) that the retriever
      returned, over the queries ``exact_rows`` (their first rows of ``inputs``) covers;
    * ``all_padding``: the share of queries that got no neighbour at all;
    * ``one_image``: the share of queries whose neighbours all show one image;
    * ``pseudo_recall_at_k`` (M2KR's pseudo-relevance recall): the share of queries for
      which an acceptable answer (``answers``, lower-cased) occurs in the text of one of
      their k items; None without answers or item texts;
    * ``evidence_recall_at_k``: the share of queries naming gold evidence (``evidence``)
      with an item of that evidence among their k; None where none is named.
    """
    rows = inputs.neighbours
    n, k = rows.shape
    out: dict[str, float | None] = {"label_precision_at_k": None, "recall_vs_exact": None,
                                    "all_padding": None, "one_image": None,
                                    "pseudo_recall_at_k": None, "evidence_recall_at_k": None}
    if n == 0 or k == 0:
        return out
    out.update(_knowledge_recalls(rows, inputs.knowledge, answers, evidence))
    valid = rows >= 0
    out["all_padding"] = float((~valid.any(axis=1)).mean())
    images = np.where(valid, np.asarray(inputs.knowledge.image_ids)[np.maximum(rows, 0)], -1)
    first = images[:, :1]
    out["one_image"] = float((valid.any(axis=1) & ((images == first) | ~valid).all(axis=1)
                              ).mean())
    kb_labels = np.asarray(inputs.knowledge.labels)
    labelled = kb_labels.any() if kb_labels.ndim == 2 else (kb_labels >= 0).any()
    if query_labels is not None and len(kb_labels) and labelled:
        query_labels = np.asarray(query_labels)
        neighbour = kb_labels[np.maximum(rows, 0)]
        if query_labels.ndim == 2:  # multi-hot rows: a hit shares one label
            same = (neighbour * query_labels[:, None, :]).sum(axis=2) > 0
        else:
            same = (neighbour == query_labels[:, None]) & (query_labels[:, None] >= 0)
        out["label_precision_at_k"] = float((same & valid).sum() / (n * k))
    if exact_rows is not None and len(exact_rows):  # exact search's rows are index keys
        keys = inputs.knowledge.index_keys
        found = rows[:len(exact_rows)]
        if keys is not None:
            found = np.where(found >= 0, np.asarray(keys)[np.maximum(found, 0)], -1)
        hits = [len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(found, exact_rows,
                                                                     strict=True)]
        wanted = int((exact_rows >= 0).sum())
        out["recall_vs_exact"] = float(sum(hits) / wanted) if wanted else None
    return out


def _knowledge_recalls(rows: np.ndarray, kb: KnowledgeBase, answers: list[list[str]] | None,
                       evidence: list[str] | None) -> dict[str, float | None]:
    """Pseudo-relevance recall@k and gold-evidence recall@k of the neighbours ``rows``."""
    out: dict[str, float | None] = {}
    if answers is not None and kb.texts is not None:
        out["pseudo_recall_at_k"] = float(answer_in_items(rows, kb.texts, answers).mean())
    if evidence is not None and kb.evidence is not None:
        named = [i for i, e in enumerate(evidence) if e]
        if named:
            found = sum(any(r >= 0 and kb.evidence[int(r)] == evidence[i] for r in rows[i])
                        for i in named)
            out["evidence_recall_at_k"] = found / len(named)
    return out


def answer_in_items(rows: np.ndarray, kb_texts: list[str],
                    answers: list[list[str]]) -> np.ndarray:
    """Per query, whether an acceptable answer (lower-cased) occurs in the text of one of its
    items ``rows`` (M2KR's pseudo-relevance), bool ``(n,)``."""
    lowered: dict[int, str] = {}
    hits = np.zeros(len(rows), bool)
    for i, (row, wanted) in enumerate(zip(rows, answers, strict=True)):
        needles = [a.lower() for a in wanted if a]
        texts = [lowered.setdefault(int(r), kb_texts[int(r)].lower()) for r in row if r >= 0]
        hits[i] = any(a in t for a in needles for t in texts)
    return hits



def answer_evidence(predicted: list[str], answers: list[list[str]], rows: np.ndarray,
                    kb_texts: list[str]) -> dict[str, float]:
    """RA-VQA's answer-versus-evidence table, as shares of the questions: answered right or
    wrong (the predicted answer is, or is not, one of the acceptable ones, case-insensitive)
    with or without an acceptable answer in the retrieved items (:func:`answer_in_items`).
    A reader that ignores good evidence shows a large ``wrong_with_evidence``; one that
    guesses right without it a large ``right_without_evidence``."""
    found = answer_in_items(rows, kb_texts, answers)
    right = np.array([p.lower() in {a.lower() for a in wanted}
                      for p, wanted in zip(predicted, answers, strict=True)], bool)
    n = max(len(right), 1)
    return {f"{verdict}_{side}_evidence": float((r & f).sum() / n)
            for verdict, r in (("right", right), ("wrong", ~right))
            for side, f in (("with", found), ("without", ~found))}
