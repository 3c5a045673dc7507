"""The public plugin API of ravlm-bench: everything a plugin imports, from this one module.

Every public name is listed in ``__all__``; the rest of ``ravlm_bench`` is internal. The
conformance kit, the leaderboard renderings, the fronts and the explorer's items load on
first use, since they pull in PIL, pandas and matplotlib.

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

import importlib
from typing import TYPE_CHECKING, Any

from ravlm_bench.foundation.distributed import DistContext, all_gather_same_shape, broadcast_object
from ravlm_bench.foundation.errors import ComponentError, ConfigError, DataError, RavlmError, cause
from ravlm_bench.foundation.paths import (
    DATA_ENV,
    cache_subdir,
    data_root,
    directory_written_atomically,
    file_sha256,
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
from ravlm_bench.stages.encoding import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageFiles,
    ImageTooLarge,
    open_image,
    pillow_bomb_warnings_off,
)
from ravlm_bench.store.run_dir import atomic_write_bytes

__all__: list[str] = [
    "CAPABILITIES", "DATA_ENV", "DEFAULT_MAX_IMAGE_PIXELS", "METRICS", "RECORD_SCHEMAS",
    "ClassScores", "ClassificationData", "ComponentError", "ConfigError", "ContractViolation",
    "DataError", "Dataset", "DistContext", "Evaluation", "ExactIndex", "FusionHead",
    "FusionInputs", "ImageEncoder", "ImageFiles", "ImageTooLarge", "JointEmbedding",
    "KnowledgeBase",
    "LabelledSplit", "Metric", "PairedSplit", "Publisher", "RankingEvaluation", "Rankings",
    "RavlmError", "Resampler", "RetrievalData", "Retriever", "SingleLabelEvaluation", "Task",
    "TextEncoder", "TrainingReport", "__version__", "all_gather_same_shape", "atomic_write_bytes",
    "broadcast_object",
    "cache_subdir", "capability", "cause", "data_root", "directory_written_atomically",
    "file_sha256",
    "exact_top_k", "hookimpl", "open_image", "option", "pair_scores", "parse_options",
    "percentile_interval", "pillow_bomb_warnings_off", "seed_everything", "sort_results",
]


# Loaded on first use (they pull in PIL, pandas or matplotlib): name -> defining module.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("check_dataset", "check_fusion_head", "check_image_encoder", "check_joint_embedding",
         "check_publisher", "check_retriever", "check_task", "check_text_encoder"),
        "ravlm_bench.testing"),
    **dict.fromkeys(("ANSWER_EVIDENCE_COLUMNS", "COLUMN_BETTER", "COST_COLUMNS",
                     "DEPENDENCE_COLUMNS", "DIAGNOSTIC_COLUMNS", "Leaderboard"),
                    "ravlm_bench.publish.leaderboard"),
    **dict.fromkeys(
        ("COMPACT_HEADERS", "dependence_caption", "describe", "display_dependence",
         "display_overview", "display_table", "format_cost", "format_metric"),
        "ravlm_bench.publish.display"),
    **dict.fromkeys(
        ("COST_AXES", "front_chart", "front_line", "front_points", "pareto_flags",
         "sweep_series", "tasks_with_costs", "uses_log_scale"),
        "ravlm_bench.publish.fronts"),
    **dict.fromkeys(("ExplorerItem", "Neighbour", "cell_items", "explorable_cells"),
                    "ravlm_bench.store.explorer_arrays"),
    **dict.fromkeys(("DEPENDENCE_LEVELS", "DEPENDENCE_METRIC", "level_label", "level_share"),
                    "ravlm_bench.scoring.dependence"),
    # suite role -> component kind, as run.json and cells name them
    "ROLE_KINDS": "ravlm_bench.config.suite",
}
__all__ += sorted(_LAZY)

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    pass


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ravlm_bench.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
