"""A system's ``knowledge`` table: the external knowledge base it retrieves from, and the
distractors synthesised beside it to stress a retriever at scale
(:mod:`ravlm_bench.stages.distractors` says how they are made)."""

from __future__ import annotations

from dataclasses import dataclass

from ravlm_bench.plugin_host.options import option


@dataclass(frozen=True)
class KnowledgeSpec:
    """A suite's ``knowledge`` table."""

    dataset: str
    split: str = "train"
    leakage_guard: bool = True
    distractors: int = option(0, "synthesised items added to the index beside the real ones",
                              minimum=0, maximum=100_000_000)
    distractor_similarity: float = option(
        0.8, "cosine similarity of each distractor to the real item it looks like",
        minimum=0.0, maximum=0.99)
    distractor_seed: int = option(0, "seed of the distractors' draws", minimum=0)

    def as_dict(self) -> dict:
        out = {"dataset": self.dataset, "split": self.split,
               "leakage_guard": self.leakage_guard}
        if self.distractors:  # a knowledge base without distractors keeps its old identity
            out.update(distractors=self.distractors,
                       distractor_similarity=self.distractor_similarity,
                       distractor_seed=self.distractor_seed)
        return out
