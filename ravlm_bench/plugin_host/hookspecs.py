"""The hook specifications: the public plugin API of ravlm-bench.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are the
hooks below. It is found through the entry-point group ``ravlm_bench`` of an installed
distribution, or loaded for one command with ``-p``. Every hook is called once, when the
registry is built, with a ``register`` callback::

    register(name: str, factory: Callable[..., Component], *, description: str = "",
             options: type | None = None)

``register`` stores the factory and its metadata; it never calls the factory. ``options`` is
a dataclass declaring the component's parameters (name, type, default, help: see
:mod:`ravlm_bench.plugin_host.options`); the harness checks a suite's parameters against it
before any work starts. Without it the parameters are inferred from the factory's signature.
Factories are called later, only for the components a run needs, with keyword arguments: the
parameters a suite gives the component, plus the extras each hook lists. Importing a plugin
module must load no weights and touch no disk: heavy imports belong inside factories.

Plugins import what they need from :mod:`ravlm_bench.api` alone.

Hook arguments are public API: new arguments may be added, none are ever renamed.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT_NAME = "ravlm_bench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback every registration hook receives."""

    def __call__(self, name: str, factory: Any, *, description: str = "",
                 options: type | None = None) -> None: ...


# ---------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------


@hookspec
def register_image_encoders(register: Register) -> None:
    """Register image encoders.

    Called once per registry build. The factory receives the suite's parameters and returns
    an object with ``dim: int`` and
    ``encode(images: list[PIL.Image.Image]) -> np.ndarray`` (float32, shape ``(n, dim)``).
    An optional ``fingerprint() -> str`` (weights, preprocessing, precision) makes its
    features cacheable.

    :param register: the registration callback.
    """


@hookspec
def register_text_encoders(register: Register) -> None:
    """Register text encoders.

    The factory receives the suite's parameters and returns an object with ``dim: int`` and
    ``encode(texts: list[str]) -> np.ndarray`` (float32, shape ``(n, dim)``), plus an
    optional ``fingerprint() -> str``.

    :param register: the registration callback.
    """


# ---------------------------------------------------------------------------------------
# Retrieval and fusion
# ---------------------------------------------------------------------------------------


@hookspec
def register_retrievers(register: Register) -> None:
    """Register retrievers (nearest-neighbour indexes).

    The factory receives the suite's parameters plus ``dim: int`` (vector width) and
    ``metric: str`` (``"cos"``, ``"ip"`` or ``"l2sq"``). It returns an object with
    ``build(vectors: float32 (n, dim), keys: int64 (n,)) -> None`` and
    ``search(queries: float32 (m, dim), k: int) -> (keys int64 (m, k), scores float32 (m, k))``:
    best first, a higher score means more similar, ``-1`` keys pad rows with fewer than
    ``k`` results (for ``l2sq`` the score is ``-|q - v|^2``). Equal scores are ordered by
    ascending key, so results never depend on insertion order, batch size or sharding. The
    harness searches with unit vectors and hands heads cosine similarities, whatever the
    metric. Optional: ``memory_bytes() -> int``,
    ``uses_labels = True``, ``uses_query_keys = True`` (see
    :data:`ravlm_bench.api.CAPABILITIES`); ``params() -> dict`` (what the index was built
    with) and ``build_or_load(path, vectors, keys, data_fingerprint) -> bool`` (load the
    index saved at ``path`` if it matches, else build and save it; True when loaded) let a
    suite's ``[run] cache_indexes = true`` keep the built index on disk.

    :param register: the registration callback.
    """


@hookspec
def register_fusion_heads(register: Register) -> None:
    """Register fusion heads: the models that turn (query, retrieved items) into a label.

    The factory receives the suite's parameters plus ``dim: int`` (the width of the query
    vector, image and text features concatenated). The returned object implements
    :class:`ravlm_bench.api.FusionHead`: ``fit(train, val, seed=...) -> TrainingReport`` and
    ``predict_proba(inputs) -> float32 (n, num_classes)`` over
    :class:`ravlm_bench.api.FusionInputs`, with the optional capabilities declared there.

    :param register: the registration callback.
    """


@hookspec
def register_joint_embeddings(register: Register) -> None:
    """Register joint embeddings: models trained on (image, caption) pairs that project both
    into one space, used by retrieval tasks (a system's ``joint_embedding``).

    The factory receives the suite's parameters plus ``dim: int`` (image + text feature
    width). The returned object implements :class:`ravlm_bench.api.JointEmbedding`:
    ``fit_pairs``, ``embed_images`` and ``embed_texts``.

    :param register: the registration callback.
    """


# ---------------------------------------------------------------------------------------
# Data and tasks
# ---------------------------------------------------------------------------------------


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset loaders.

    The factory receives the suite's parameters (at least ``root``, the dataset directory)
    and returns an object implementing :class:`ravlm_bench.api.Dataset`.

    :param register: the registration callback.
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (leaderboard columns).

    The factory receives the suite's parameters and returns an object implementing
    :class:`ravlm_bench.api.Task`: its dataset, the head interface it needs, its metrics,
    ``build`` (the splits) and ``evaluate`` (scores, with the shared bootstrap resamples).

    :param register: the registration callback.
    """


# ---------------------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------------------


@hookspec
def register_publishers(register: Register) -> None:
    """Register leaderboard publishers (output formats).

    The factory receives no arguments and returns an object with
    ``publish(board: Leaderboard, out_dir: pathlib.Path) -> list[Path]``, where ``board`` is a
    :class:`ravlm_bench.publish.leaderboard.Leaderboard`.

    :param register: the registration callback.
    """
