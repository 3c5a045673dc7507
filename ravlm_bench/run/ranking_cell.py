"""The pipeline of joint-embedding tasks: images and captions -> a joint embedding trained
on the training pairs -> both test sides indexed by the system's retriever -> rankings both
ways (text to image and image to text), padded to the task's ranking depth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ravlm_bench.config.suite import SystemSpec
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import (
    RetrievalData,
    TrainingReport,
    capability,
    validate_search,
)
from ravlm_bench.run.pipeline import (
    CellContext,
    PipelineOutput,
    StageClock,
    create_encoders,
    describe,
    measure_search,
    memory_bytes,
)
from ravlm_bench.scoring.evaluation import Rankings
from ravlm_bench.stages.components import Component, guard


def run_joint_embedding_cell(task: Component, data: RetrievalData, system: SystemSpec,
                             seed: int, ctx: CellContext, clock: StageClock,
                             checkpoint_dir: Path | None) -> PipelineOutput:
    """Images and captions -> a joint embedding trained on the training pairs -> both test
    sides indexed -> rankings both ways."""
    encoders = create_encoders(system, ctx)
    with clock("encode"):
        train_image = ctx.features.images(encoders.image, "train", data.train.image_paths)
        train_text = ctx.features.texts(encoders.text, "train", data.train.texts)
        test_image = ctx.features.images(encoders.image, "test", data.test.image_paths)
        test_text = ctx.features.texts(encoders.text, "test", data.test.texts)

    if system.joint_embedding is None:
        raise ConfigError(f"system {system.name!r} has no joint_embedding, which task "
                          f"{task.name!r} needs (e.g. joint_embedding = {{ name = \"infonce\" }})")
    embedding = ctx.factory.create("joint-embeddings", system.joint_embedding, fresh=True,
                                   dim=encoders.dim)
    if system.retriever is None:
        raise ConfigError(f"system {system.name!r} needs a retriever for task {task.name!r}")
    with clock("train"), guard(embedding, "fit_pairs"):
        training = TrainingReport.from_fit(embedding.obj.fit_pairs(
            train_image, train_text, data.train.caption_image, seed=seed,
            **ctx.execution.training_kwargs(embedding.obj, embedding.kind, checkpoint_dir)))
        image_emb = np.ascontiguousarray(embedding.obj.embed_images(test_image), np.float32)
        text_emb = np.ascontiguousarray(embedding.obj.embed_texts(test_text), np.float32)

    cost: dict[str, Any] = {}
    with clock("index"):
        emb_dim = image_emb.shape[1]
        images_index, captions_index = (ctx.execution.retriever(ctx.factory.create(
            "retrievers", system.retriever, fresh=True, dim=emb_dim, metric=ctx.metric))
            for _ in range(2))
        build_started = time.perf_counter()
        with guard(images_index, "build"):
            images_index.obj.build(image_emb, np.arange(len(image_emb), dtype=np.int64))
        cost["index_build_s"] = time.perf_counter() - build_started
        cost["index_memory_bytes"] = memory_bytes(images_index)
        with guard(captions_index, "build"):
            captions_index.obj.build(text_emb, np.arange(len(text_emb), dtype=np.int64))

    with clock("predict"):
        depth = int(capability(task.obj, "tasks", "ranking_depth"))
        t2i = _ranked_keys(images_index, text_emb, min(depth, len(image_emb)), depth)
        i2t = _ranked_keys(captions_index, image_emb, min(depth, len(text_emb)), depth)
        cost.update(measure_search(images_index, text_emb, k=min(depth, len(image_emb))))
    return PipelineOutput(Rankings(t2i=t2i, i2t=i2t), cost, training,
                          describe(encoders.image, encoders.text, images_index, embedding))


def _ranked_keys(index: Component, queries: np.ndarray, k: int, width: int) -> np.ndarray:
    """The keys ``index`` returns for ``queries``, best first, padded with -1 to ``width``
    columns when the index holds fewer than ``width`` items (so every K is defined)."""
    with guard(index, "search"):
        keys, _ = validate_search(index.obj.search(queries, k), len(queries), k)
    if k < width:
        keys = np.concatenate([keys, np.full((len(keys), width - k), -1, np.int64)], axis=1)
    return keys
