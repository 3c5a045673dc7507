"""Damaged training checkpoints: every one is reported in one line naming the file and trained
afresh, to exactly what a fresh training gives; never reused, never a failed run. Also the
checkpoint's atomic write: a temporary file of its own, removed when the write fails."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ravlm_bench.plugin_host.contracts import KnowledgeBase
from ravlm_bench.stages.retrieval import fusion_inputs
from ravlm_plugins.fusion import checkpoint as checkpoint_module
from ravlm_plugins.fusion.checkpoint import (
    CHECKPOINT_NAME,
    CHECKSUM_KEY,
    Checkpoint,
    TrainState,
    checksum,
)

D_IMAGE, D_TEXT = 24, 16
EPOCHS = 3  # one digit: damage_metadata rewrites it in place
SEED = 5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the trainings ------------------------------------------------------------------------


class ConcatTraining:
    """The concat head (the shared training loop), with dropout so its random states matter."""

    def __init__(self, registry):
        rng = np.random.default_rng(0)
        image = rng.normal(size=(120, D_IMAGE)).astype(np.float32)
        text = rng.normal(size=(120, D_TEXT)).astype(np.float32)
        labels = (image[:, 0] + text[:, 0] > 0).astype(np.int64)
        kb = KnowledgeBase(image, text, labels, np.arange(120, dtype=np.int64))
        self.train = fusion_inputs(image, text, retriever=None, kb=kb, k=0, labels=labels)
        self.registry = registry

    def fit(self, checkpoint_dir: Path | None):
        head = self.registry.create("fusion-heads", "concat", dim=D_IMAGE + D_TEXT, hidden=32,
                                    dropout=0.2, epochs=EPOCHS, batch_size=32, progress=False)
        report = head.fit(self.train, None, seed=SEED, checkpoint_dir=checkpoint_dir)
        return report, head.predict_proba(self.train)


class InfoNCETraining:
    """The infonce joint embedding (its own training loop)."""

    def __init__(self, registry):
        rng = np.random.default_rng(1)
        self.image = rng.normal(size=(60, D_IMAGE)).astype(np.float32)
        self.caption_image = np.repeat(np.arange(60), 2)
        self.text = (self.image[self.caption_image, :D_TEXT]
                     + 0.3 * rng.normal(size=(120, D_TEXT))).astype(np.float32)
        self.registry = registry

    def fit(self, checkpoint_dir: Path | None):
        model = self.registry.create("joint-embeddings", "infonce", dim=D_IMAGE + D_TEXT,
                                     width=16, epochs=EPOCHS, batch_size=16, progress=False)
        report = model.fit_pairs(self.image, self.text, self.caption_image, seed=SEED,
                                 checkpoint_dir=checkpoint_dir)
        return report, model.embed_texts(self.text)


@pytest.fixture(params=[ConcatTraining, InfoNCETraining], ids=["concat", "infonce"])
def training(request, registry):
    return request.param(registry)


# -- ways a checkpoint file gets damaged ---------------------------------------------------


def tensor_region(path: Path, key: str) -> tuple[int, int]:
    """Where a tensor's bytes lie in a safetensors file: [begin, end)."""
    raw = path.read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    begin, end = json.loads(raw[8:8 + header_size])[key]["data_offsets"]
    return 8 + header_size + begin, 8 + header_size + end


def rewrite_bytes(path: Path, offset: int, data: bytes) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    assert path.stat().st_size == size  # damaged in place: safetensors still parses it


def damage_weight(path: Path) -> None:
    """One byte of the largest weight matrix: the high byte of its first float, whose
    exponent it scales."""
    with safe_open(str(path), framework="pt") as handle:
        key = max((k for k in handle.keys() if k.startswith("model.")),
                  key=lambda k: math.prod(handle.get_slice(k).get_shape()))
    begin, _ = tensor_region(path, key)
    byte = path.read_bytes()[begin + 3]
    rewrite_bytes(path, begin + 3, bytes([byte ^ 0x40]))


def damage_rng_state(path: Path) -> None:
    """Zeroes over the sampling generator's state: a state torch refuses to set."""
    begin, end = tensor_region(path, "rng.generator")
    rewrite_bytes(path, begin, bytes(end - begin))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def damage_metadata(path: Path) -> None:
    """The epoch count in the metadata JSON, one lower: still valid JSON of the same size,
    which without the checksum would resume the finished training for another epoch."""
    raw = path.read_bytes()
    counted = f'\\"epoch\\": {EPOCHS},'.encode()
    at = raw.index(counted)  # the state's own count comes before its history's
    rewrite_bytes(path, at, counted.replace(str(EPOCHS).encode(), str(EPOCHS - 1).encode()))


def the_one_warning(caplog, path: Path) -> str:
    """The single warning that names ``path``, on a single line."""
    about = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING and str(path) in r.getMessage()]
    assert len(about) == 1, about
    assert "\n" not in about[0]
    return about[0]


# -- damaged checkpoints: reported, trained afresh, overwritten ----------------------------


@pytest.mark.parametrize(("damage", "said"), [
    (damage_weight, "its content does not match its checksum"),
    (damage_rng_state, "its content does not match its checksum"),
    (truncate, "is unreadable"),  # the parser catches this one even without the checksum
    (damage_metadata, "its content does not match its checksum"),
], ids=["weight-byte", "rng-state", "truncated", "metadata"])
def test_a_damaged_checkpoint_is_trained_afresh(training, damage, said, tmp_path, caplog):
    _, fresh = training.fit(None)
    training.fit(tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    damage(path)

    with caplog.at_level(logging.WARNING):
        report, outputs = training.fit(tmp_path)
    assert said in the_one_warning(caplog, path)
    assert not report.reused and report.resumed_from_epoch == 0 and report.epochs == EPOCHS
    np.testing.assert_array_equal(outputs, fresh)

    # the damaged file was overwritten by this training's own, which is reused
    again, outputs = training.fit(tmp_path)
    assert again.reused
    np.testing.assert_array_equal(outputs, fresh)


def test_an_intact_checkpoint_is_reused(training, tmp_path, caplog):
    _, fresh = training.fit(None)
    training.fit(tmp_path)
    with caplog.at_level(logging.WARNING):
        report, outputs = training.fit(tmp_path)
    assert report.reused and report.steps == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    np.testing.assert_array_equal(outputs, fresh)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())


def rewrite_signed(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
    """A checkpoint whose checksum matches its (wrong) content, as a faulty writer leaves."""
    metadata = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    save_file(tensors, str(path), metadata={**metadata, CHECKSUM_KEY: checksum(tensors, metadata)})


def unsigned(path: Path, tensors, metadata) -> None:
    """As the code before checkpoints carried a checksum wrote it."""
    save_file(tensors, str(path), metadata={k: v for k, v in metadata.items()
                                            if k != CHECKSUM_KEY})


def signed_without_rng_state(path: Path, tensors, metadata) -> None:
    rewrite_signed(path, {k: v for k, v in tensors.items() if k != "rng.torch"}, metadata)


def signed_with_refused_rng_state(path: Path, tensors, metadata) -> None:
    """Refused after the weights and moments were loaded: they must be put back."""
    zeroed = torch.zeros_like(tensors["rng.generator"])
    rewrite_signed(path, {**tensors, "rng.generator": zeroed}, metadata)


@pytest.mark.parametrize(("rewrite", "said"), [
    (unsigned, "has no checksum (it was written before checkpoints carried one)"),
    (signed_without_rng_state, "is damaged: it lacks rng.torch"),
    (signed_with_refused_rng_state, "is damaged: torch refused its state (RuntimeError"),
], ids=["no-checksum", "missing-tensor", "refused-state"])
def test_an_unverifiable_or_unusable_checkpoint_is_trained_afresh(training, rewrite, said,
                                                                  tmp_path, caplog):
    _, fresh = training.fit(None)
    training.fit(tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    rewrite(path, *read_checkpoint(path))

    with caplog.at_level(logging.WARNING):
        report, outputs = training.fit(tmp_path)
    assert said in the_one_warning(caplog, path)
    assert not report.reused and report.resumed_from_epoch == 0
    np.testing.assert_array_equal(outputs, fresh)


# -- the atomic write ----------------------------------------------------------------------


def tiny_training_state():
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.Adam(model.parameters()), torch.Generator().manual_seed(0)


def test_every_write_has_a_temporary_file_of_its_own(tmp_path, monkeypatch):
    written = []
    real_save = safetensors.torch.save_file

    def recording_save(tensors, filename, metadata=None):
        written.append(Path(filename))
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", recording_save)
    model, optimizer, generator = tiny_training_state()
    for signature in ("one writer", "another writer"):
        Checkpoint(tmp_path, signature).save(model, optimizer, TrainState(), None, generator)
    assert len(set(written)) == 2 and all(p.parent == tmp_path for p in written)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_a_failed_write_leaves_the_last_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    model, optimizer, generator = tiny_training_state()
    checkpoint = Checkpoint(tmp_path, "sig")
    checkpoint.save(model, optimizer, TrainState(epoch=1), None, generator)
    before = checkpoint.path.read_bytes()

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(model, optimizer, TrainState(epoch=2), None, generator)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    assert checkpoint.path.read_bytes() == before


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    orphan = tmp_path / f".{CHECKPOINT_NAME}.0123abcd.tmp"
    in_progress = tmp_path / f".{CHECKPOINT_NAME}.4567cdef.tmp"
    for path in (orphan, in_progress):
        path.write_bytes(b"half a file")
    hours_ago = time.time() - 2 * checkpoint_module.ORPHAN_AGE_S
    os.utime(orphan, (hours_ago, hours_ago))

    model, optimizer, generator = tiny_training_state()
    assert Checkpoint(tmp_path, "sig").resume(model, optimizer, generator) is None
    assert not orphan.exists() and in_progress.exists()
