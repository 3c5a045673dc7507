"""The joint embedding of retrieval tasks: symmetric InfoNCE with a learned temperature."""

from __future__ import annotations

import numpy as np
import pytest

from ravlm_bench.api import JointEmbedding, TrainingReport, check_joint_embedding
from ravlm_bench.foundation.errors import ConfigError
from ravlm_bench.plugin_host.contracts import validate_vectors

D_IMAGE, D_TEXT, LATENT = 48, 32, 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def paired_split(rng, mix_image, mix_text, images, captions_per_image=2):
    """Images and captions that describe the same latent content through different maps."""
    latent = rng.normal(size=(images, LATENT))
    image = latent @ mix_image + 0.3 * rng.normal(size=(images, D_IMAGE))
    caption_image = np.repeat(np.arange(images), captions_per_image)
    text = latent[caption_image] @ mix_text + 0.3 * rng.normal(size=(len(caption_image), D_TEXT))
    return image.astype(np.float32), text.astype(np.float32), caption_image


def text_to_image_recall_at_1(model, image, text, caption_image) -> float:
    scores = model.embed_texts(text) @ model.embed_images(image).T
    return float((scores.argmax(axis=1) == caption_image).mean())


def make(registry, **params):
    model = registry.create("joint-embeddings", "infonce", dim=D_IMAGE + D_TEXT, width=32,
                            progress=False, **params)
    assert isinstance(model, JointEmbedding)
    return model


def test_infonce_is_a_joint_embedding_not_a_fusion_head(registry):
    assert "infonce" in registry.names("joint-embeddings")
    assert "infonce" not in registry.names("fusion-heads")
    model = make(registry)
    assert model.data_parallel and model.checkpoints  # fit_pairs takes dist= and checkpoint_dir=


def test_infonce_lifts_recall_at_1_from_chance(registry):
    rng = np.random.default_rng(0)
    mix_image = rng.normal(size=(LATENT, D_IMAGE))
    mix_text = rng.normal(size=(LATENT, D_TEXT))
    train = paired_split(rng, mix_image, mix_text, 400)
    test = paired_split(rng, mix_image, mix_text, 100)
    chance = 1 / 100

    untrained = make(registry, epochs=0)
    untrained.fit_pairs(*train, seed=0)
    before = text_to_image_recall_at_1(untrained, *test)
    model = make(registry, epochs=10, batch_size=64)
    report = model.fit_pairs(*train, seed=0)
    after = text_to_image_recall_at_1(model, *test)
    assert before < 5 * chance, before
    assert after > 40 * chance, (before, after)
    assert isinstance(report, TrainingReport) and report.extra["head"] == "infonce"
    assert 0.01 <= report.extra["temperature"] <= 1.0 and report.steps == 10 * 7

    embedded = validate_vectors(model.embed_images(test[0]), 100, 32)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, rtol=1e-5)
    validate_vectors(model.embed_texts(test[1]), 200, 32)


def test_infonce_same_seed_is_bit_identical(registry):
    rng = np.random.default_rng(1)
    pairs = paired_split(rng, rng.normal(size=(LATENT, D_IMAGE)),
                         rng.normal(size=(LATENT, D_TEXT)), 120, captions_per_image=3)

    def run(seed):
        model = make(registry, epochs=3, batch_size=32)
        model.fit_pairs(*pairs, seed=seed)
        return model.embed_texts(pairs[1])

    first = run(5)
    assert np.array_equal(first, run(5))
    assert not np.array_equal(first, run(6))


def test_infonce_rejects_bad_pairs_and_early_calls(registry):
    model = make(registry)
    with pytest.raises(ConfigError, match="before fit_pairs"):
        model.embed_images(np.zeros((2, D_IMAGE), np.float32))
    image = np.zeros((3, D_IMAGE), np.float32)
    text = np.zeros((4, D_TEXT), np.float32)
    with pytest.raises(Exception, match="caption_image"):
        model.fit_pairs(image, text, np.array([0, 1, 2, 3]), seed=0)


def test_infonce_resumes_from_its_last_checkpoint(registry, tmp_path):
    rng = np.random.default_rng(2)
    pairs = paired_split(rng, rng.normal(size=(LATENT, D_IMAGE)),
                         rng.normal(size=(LATENT, D_TEXT)), 100)
    straight = make(registry, epochs=4, batch_size=32)
    straight.fit_pairs(*pairs, seed=1)
    make(registry, epochs=2, batch_size=32).fit_pairs(*pairs, seed=1, checkpoint_dir=tmp_path)
    resumed = make(registry, epochs=4, batch_size=32)
    report = resumed.fit_pairs(*pairs, seed=1, checkpoint_dir=tmp_path)
    assert report.resumed_from_epoch == 2 and report.epochs == 4
    assert np.array_equal(straight.embed_texts(pairs[1]), resumed.embed_texts(pairs[1]))


def test_infonce_passes_the_conformance_kit(registry):
    check_joint_embedding(lambda **kw: registry.create(
        "joint-embeddings", "infonce", width=16, epochs=2, batch_size=16, progress=False, **kw))


class ProjectionEmbedding(JointEmbedding):
    """A correct minimal embedding: fixed random projections, unit length."""

    def fit_pairs(self, image, text, caption_image, *, seed):
        rng = np.random.default_rng(seed)
        self.image_proj = rng.normal(size=(image.shape[1], 4)).astype(np.float32)
        self.text_proj = rng.normal(size=(text.shape[1], 4)).astype(np.float32)
        return TrainingReport(epochs=1)

    @staticmethod
    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def embed_images(self, image):
        return self.unit(image @ self.image_proj)

    def embed_texts(self, text):
        return self.unit(text @ self.text_proj)


class TwoSpacesEmbedding(ProjectionEmbedding):
    def embed_texts(self, text):
        return np.repeat(super().embed_texts(text), 2, axis=1)


class BatchStatisticsEmbedding(ProjectionEmbedding):
    def embed_images(self, image):
        projected = image @ self.image_proj
        return self.unit(projected + projected.std(axis=0))


class UndeclaredDistEmbedding(ProjectionEmbedding):
    data_parallel = True  # but fit_pairs takes no dist


@pytest.mark.parametrize(("broken", "message"), [
    (TwoSpacesEmbedding, "embed_images gives 4-wide vectors but embed_texts 8-wide"),
    (BatchStatisticsEmbedding, "embed_images depends on the batch size"),
    (UndeclaredDistEmbedding, "data_parallel = True is declared but fit_pairs.. takes no dist="),
])
def test_the_conformance_kit_says_what_a_broken_joint_embedding_gets_wrong(broken, message):
    check_joint_embedding(lambda **kw: ProjectionEmbedding())
    with pytest.raises(AssertionError, match=message):
        check_joint_embedding(lambda **kw: broken())
