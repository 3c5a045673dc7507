"""The public plugin API of ravlm-bench: everything a plugin imports, from this one module.

Names here are a contract: none is renamed or removed without a deprecation path. The
rest of ``ravlm_bench`` is internal and may change in any release.

* Hooks: :data:`hookimpl` marks a plugin's registration functions (the hooks are listed in
  :mod:`ravlm_bench.plugin_host.hookspecs`); each gets ``register(name, factory, *, description="",
  options=None)``.
* Typed parameters: :func:`option` fields in an ``options`` dataclass
  (:mod:`ravlm_bench.plugin_host.options`); :func:`parse_options` builds one from a
  suite's parameters.
* Component kinds: the base classes :class:`FusionHead` and :class:`JointEmbedding`, the
  protocols :class:`ImageEncoder`, :class:`TextEncoder`, :class:`Retriever`,
  :class:`Dataset`, :class:`Task`, :class:`Publisher`, and every optional capability with
  its default in :data:`CAPABILITIES`.
* The data between stages: :class:`LabelledSplit`, :class:`ClassificationData`,
  :class:`PairedSplit`, :class:`RetrievalData`, :class:`KnowledgeBase`,
  :class:`FusionInputs`, :class:`TrainingReport`; and for tasks :class:`Metric`,
  :class:`Evaluation`, :class:`Resampler`, :class:`ClassScores`, :class:`Rankings` with the
  reference evaluations :class:`SingleLabelEvaluation` and :class:`RankingEvaluation`.
* Helpers the reference plugins share: errors, paths and caches, seeding, image decoding,
  the distributed collectives a data-parallel head needs, the leaderboard's renderings.
* The conformance kit: ``check_*`` functions for every component kind.
"""

from __future__ import annotations

from ravlm_bench.foundation.distributed import DistContext, all_gather_same_shape, broadcast_object
from ravlm_bench.foundation.errors import ComponentError, ConfigError, DataError, RavlmError, cause
from ravlm_bench.foundation.paths import (
    DATA_ENV,
    cache_subdir,
    data_root,
    directory_written_atomically,
)
from ravlm_bench.foundation.seeding import seed_everything
from ravlm_bench.foundation.version import __version__
from ravlm_bench.plugin_host.contracts import (
    CAPABILITIES,
    METRICS,
    RECORD_SCHEMAS,
    ClassificationData,
    ContractViolation,
    Dataset,
    FusionHead,
    FusionInputs,
    ImageEncoder,
    JointEmbedding,
    KnowledgeBase,
    LabelledSplit,
    PairedSplit,
    Publisher,
    RetrievalData,
    Retriever,
    Task,
    TextEncoder,
    TrainingReport,
    capability,
)
from ravlm_bench.plugin_host.hookspecs import hookimpl
from ravlm_bench.plugin_host.options import option, parse_options
from ravlm_bench.scoring.evaluation import (
    ClassScores,
    Evaluation,
    Metric,
    RankingEvaluation,
    Rankings,
    SingleLabelEvaluation,
)
from ravlm_bench.scoring.ranking import ExactIndex, exact_top_k, pair_scores, sort_results
from ravlm_bench.scoring.resampling import Resampler, percentile_interval
from ravlm_bench.stages.encoding import ImageFiles
from ravlm_bench.store.run_dir import atomic_write_bytes

__all__ = [
    "CAPABILITIES", "DATA_ENV", "METRICS", "RECORD_SCHEMAS",
    "ClassScores", "ClassificationData", "ComponentError", "ConfigError", "ContractViolation",
    "DataError", "Dataset", "DistContext", "Evaluation", "ExactIndex", "FusionHead",
    "FusionInputs", "ImageEncoder", "ImageFiles", "JointEmbedding", "KnowledgeBase",
    "LabelledSplit", "Metric", "PairedSplit", "Publisher", "RankingEvaluation", "Rankings",
    "RavlmError", "Resampler", "RetrievalData", "Retriever", "SingleLabelEvaluation", "Task",
    "TextEncoder", "TrainingReport", "__version__", "all_gather_same_shape", "atomic_write_bytes",
    "broadcast_object",
    "cache_subdir", "capability", "cause", "data_root", "directory_written_atomically",
    "exact_top_k", "hookimpl", "option", "pair_scores", "parse_options", "percentile_interval",
    "seed_everything", "sort_results",
]


_CONFORMANCE = ("check_dataset", "check_fusion_head", "check_image_encoder",
                "check_joint_embedding", "check_publisher", "check_retriever", "check_task",
                "check_text_encoder")
__all__ += _CONFORMANCE


def __getattr__(name: str):
    # The conformance kit and the leaderboard renderings are for tests and publishers: they
    # load (PIL, pandas) only when asked for.
    if name in _CONFORMANCE:
        from ravlm_bench import testing

        return getattr(testing, name)
    if name in ("COLUMN_BETTER", "COMPACT_HEADERS", "COST_COLUMNS", "DIAGNOSTIC_COLUMNS",
                "Leaderboard", "describe", "display_overview", "display_table",
                "format_cost", "format_metric"):
        from ravlm_bench.publish import leaderboard

        return getattr(leaderboard, name)
    if name in ("COST_AXES", "front_line", "front_points", "pareto_flags", "sweep_series",
                "tasks_with_costs", "uses_log_scale"):
        from ravlm_bench.publish import fronts

        return getattr(fronts, name)
    if name == "ROLE_KINDS":  # suite role -> component kind, as run.json and cells name them
        from ravlm_bench.config.suite import ROLE_KINDS

        return ROLE_KINDS
    if name in ("ExplorerItem", "Neighbour", "cell_items", "explorable_cells"):
        from ravlm_bench.store import explorer_arrays as explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'ravlm_bench.api' has no attribute {name!r}")
