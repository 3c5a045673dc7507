"""Seeding every source of randomness a run touches, so one seed gives one result."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global state and torch; return a seeded generator.

    Trainers draw shuffles and samples from the returned ``torch.Generator`` and build their
    models after this call, so the same seed on the same machine gives bit-identical weights.
    Deterministic algorithms are requested (``warn_only``: an op without a deterministic
    kernel logs a warning instead of failing the run).
    """
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # cuBLAS needs this before its first call to be deterministic; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if hasattr(torch.backends, "cudnn"):
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
