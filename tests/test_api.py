"""The public API module: every name it promises resolves, capabilities are declared once,
declared parameters feed the fingerprints, and a fit that returns a dict gives a training
report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ravlm_bench import api
from ravlm_bench.config.suite import ComponentSpec
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


def test_a_fit_must_return_a_training_report():
    report = api.TrainingReport(epochs=3, steps=30, extra={"train_loss": 0.25})
    assert api.TrainingReport.from_fit(report) is report
    assert api.TrainingReport.from_fit(None) == api.TrainingReport()
    for wrong in ({"epochs": 3}, [1, 2]):
        with pytest.raises(api.ContractViolation, match="expected a TrainingReport"):
            api.TrainingReport.from_fit(wrong)
