"""The public API module: every name it promises resolves, declared parameters feed the
fingerprints, and what plugins wrote before 1.0 keeps working through its deprecation path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ravlm_bench import api
from ravlm_bench.config.suite import ComponentSpec
from ravlm_bench.scoring.evaluation import adapt_task
from ravlm_bench.stages.components import ComponentFactory


def test_every_public_name_resolves():
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_capabilities_are_declared_once_and_the_base_classes_carry_them():
    for name, default in api.CAPABILITIES["fusion-heads"].items():
        assert getattr(api.FusionHead, name) == default
        assert api.capability(object(), "fusion-heads", name) == default
    for name, default in api.CAPABILITIES["joint-embeddings"].items():
        assert getattr(api.JointEmbedding, name) == default


@dataclasses.dataclass
class ScaleOptions:
    scale: float = api.option(1.0, "multiplies every feature")


class ScaledEncoder:
    """An encoder whose own fingerprint forgets its parameter."""

    dim = 2

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def encode(self, texts):
        return np.full((len(texts), 2), self.scale, np.float32)

    def fingerprint(self) -> str:
        return "scaled-encoder-v1"


class ScalePlugin:
    @api.hookimpl
    def register_text_encoders(self, register):
        register("scaled", ScaledEncoder, options=ScaleOptions)


def test_declared_parameters_feed_the_fingerprint_a_plugin_forgot():
    from ravlm_bench.plugin_host.host import get_plugin_manager
    from ravlm_bench.plugin_host.registry import Registry

    pm = get_plugin_manager(entry_points=False)
    pm.register(ScalePlugin(), name="scale-plugin")
    factory = ComponentFactory(Registry(pm))
    prints = {scale: factory.create("text-encoders", ComponentSpec("scaled", params)).fingerprint()
              for scale, params in ((1.0, {}), (1.0, {"scale": 1.0}), (2.0, {"scale": 2.0}))}
    # the default given or left out is one configuration; another value is another
    assert len({f.split("|")[0] for f in prints.values()}) == 1
    assert factory.create("text-encoders", ComponentSpec("scaled", {})).fingerprint() == \
        factory.create("text-encoders", ComponentSpec("scaled", {"scale": 1.0})).fingerprint()
    assert prints[1.0] != prints[2.0]


class LegacyTask:
    """A task as written before 1.0: a kind, no metrics, no evaluate."""

    name, dataset, kind = "legacy-category", "coco", "classification"

    def build(self, dataset, seed):
        from ravlm_plugins.tasks.coco_category import CocoCategory

        return CocoCategory().build(dataset, seed)


def test_a_task_with_the_old_kind_gets_that_kinds_evaluation(registry, demo_world):
    with pytest.warns(DeprecationWarning, match="declares kind = 'classification'"):
        task = adapt_task(LegacyTask())
    assert api.capability(task, "tasks", "head") == "fusion-head"
    dataset = registry.create("datasets", "coco", root=str(demo_world / "coco"))
    api.check_task(task, dataset)


def test_a_fit_that_returns_a_dict_becomes_a_training_report():
    report = api.TrainingReport.coerce({"epochs": 3, "steps": 30, "seconds": 1.5,
                                        "seconds_this_run": 1.5, "train_loss": 0.25})
    assert (report.epochs, report.steps, report.extra) == (3, 30, {"train_loss": 0.25})
    untimed = api.TrainingReport.coerce({"head": "mine"})
    assert untimed.as_dict()["seconds"] is None  # the stage's own time stands in
    with pytest.raises(api.ContractViolation, match="expected a TrainingReport"):
        api.TrainingReport.coerce([1, 2])
