"""The plugin host and the registry: registration, discovery failures and their messages."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from ravlm_bench.api import hookimpl
from ravlm_bench.foundation.errors import ComponentError, ConfigError, PluginLoadError
from ravlm_bench.plugin_host.host import get_plugin_manager
from ravlm_bench.plugin_host.registry import Registry


class TinyRetriever:
    def __init__(self, dim: int, metric: str):
        self.dim, self.metric = dim, metric

    def build(self, vectors, keys):
        self.vectors, self.keys = vectors, keys

    def search(self, queries, k):
        scores = queries @ self.vectors.T
        order = np.argsort(-scores, axis=1)[:, :k]
        return self.keys[order], np.take_along_axis(scores, order, 1).astype(np.float32)


class TinyPlugin:
    @hookimpl
    def register_retrievers(self, register):
        register("tiny", TinyRetriever, description="brute force for tests")


def fresh_registry(*plugins, **kwargs) -> Registry:
    pm = get_plugin_manager(entry_points=False, **kwargs)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test-plugin-{i}")
    pm.check_pending()
    return Registry(pm)


def test_plugin_registered_at_test_time_adds_a_retriever():
    registry = fresh_registry(TinyPlugin())
    assert registry.names("retrievers") == ["tiny"]
    entry = registry.get("retrievers", "tiny")
    assert entry.plugin == "test-plugin-0"
    assert entry.description == "brute force for tests"
    retriever = registry.create("retrievers", "tiny", dim=4, metric="ip")
    assert isinstance(retriever, TinyRetriever) and retriever.dim == 4


def test_factories_are_not_called_at_registration():
    calls = []

    class Lazy:
        @hookimpl
        def register_retrievers(self, register):
            register("lazy", lambda **kw: calls.append(kw))

    registry = fresh_registry(Lazy())
    assert calls == []
    registry.create("retrievers", "lazy", dim=3, metric="cos")
    assert calls == [{"dim": 3, "metric": "cos"}]


def test_duplicate_name_names_both_plugins():
    with pytest.raises(ConfigError) as info:
        fresh_registry(TinyPlugin(), TinyPlugin())
    message = str(info.value)
    assert "'tiny' is registered twice" in message
    assert "'test-plugin-0'" in message and "'test-plugin-1'" in message


def test_unknown_name_lists_known_names_and_suggests():
    registry = fresh_registry(TinyPlugin())
    with pytest.raises(ConfigError) as info:
        registry.get("retrievers", "tinny")
    assert "unknown retriever 'tinny'; did you mean 'tiny'?" in str(info.value)
    assert "Known: tiny." in str(info.value)


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown component kind 'retriever'"):
        fresh_registry().names("retriever")


def test_misspelt_hook_marks_the_plugin_broken(tmp_path):
    path = tmp_path / "typo_plugin.py"
    path.write_text(textwrap.dedent("""
        from ravlm_bench.api import hookimpl

        @hookimpl
        def register_retriever(register):
            register("never", object)
    """))
    pm = get_plugin_manager([str(path)], entry_points=False)
    assert "typo_plugin" in pm.broken
    message = pm.broken["typo_plugin"].message()
    assert "register_retriever" in message and "known hooks" in message
    assert "register_retrievers" in message
    with pytest.raises(PluginLoadError, match="typo_plugin"):
        get_plugin_manager([str(path)], entry_points=False, strict=True)


def test_plugin_whose_import_raises_is_reported_and_skipped(tmp_path):
    bad = tmp_path / "exploding.py"
    bad.write_text("raise RuntimeError('no GPU driver found')\n")
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""
        from ravlm_bench.api import hookimpl

        @hookimpl
        def register_retrievers(register):
            register("good", dict)
    """))
    pm = get_plugin_manager([str(bad), str(good)], entry_points=False)
    registry = Registry(pm)
    assert registry.names("retrievers") == ["good"]
    message = pm.broken["exploding"].message()
    assert message == (f"plugin 'exploding' (local plugin '{bad}') is broken: "
                       "RuntimeError: no GPU driver found")
    # a run that needs a missing component sees the broken plugin in the error
    with pytest.raises(ConfigError, match="exploding.*no GPU driver found"):
        registry.get("retrievers", "wanted")


def test_registration_that_raises_breaks_only_that_plugin():
    class Half:
        @hookimpl
        def register_retrievers(self, register):
            register("half", dict)
            raise ValueError("config file missing")

    pm = get_plugin_manager(entry_points=False)
    pm.register(Half(), name="half-plugin")
    pm.register(TinyPlugin(), name="tiny-plugin")
    registry = Registry(pm)
    assert registry.names("retrievers") == ["tiny"]
    assert "ValueError: config file missing" in pm.broken["half-plugin"].error


def test_factory_error_names_the_plugin():
    def failing(**kwargs):
        raise OSError("weights not found")

    class Failing:
        @hookimpl
        def register_image_encoders(self, register):
            register("broken-resnet", failing)

    registry = fresh_registry(Failing())
    with pytest.raises(ComponentError) as info:
        registry.create("image-encoders", "broken-resnet")
    assert str(info.value) == ("image-encoder 'broken-resnet' (plugin 'test-plugin-0'): "
                               "factory failed: OSError: weights not found")


def test_disable_by_name_and_by_env(tmp_path, monkeypatch):
    good = tmp_path / "switchable.py"
    good.write_text("from ravlm_bench.api import hookimpl\n\n@hookimpl\n"
                    "def register_retrievers(register):\n    register('sw', dict)\n")
    assert Registry(get_plugin_manager([str(good)], entry_points=False)).names("retrievers")
    off = get_plugin_manager([str(good), "no:switchable"], entry_points=False)
    assert Registry(off).names("retrievers") == []
    monkeypatch.setenv("RAVLM_BENCH_DISABLE", "switchable")
    assert Registry(get_plugin_manager([str(good)], entry_points=False)).names("retrievers") == []
