"""Conformance checks for image and text encoders: shapes, dtypes, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np

from ravlm_bench.plugin_host.contracts import (
    ContractViolation,
    validate_vectors,
)
from ravlm_bench.testing._common import SAMPLE_TEXTS, _fail, sample_images


def _check_encoder(encoder: Any, inputs: list, atol: float) -> np.ndarray:
    dim = getattr(encoder, "dim", None)
    if not isinstance(dim, int) or dim <= 0:
        _fail(f"encoder.dim must be a positive int, got {dim!r}")
    try:
        full = validate_vectors(encoder.encode(inputs), len(inputs), dim)
        single = validate_vectors(encoder.encode(inputs[:1]), 1, dim)
        split = [validate_vectors(encoder.encode(inputs[i:i + 2]), len(inputs[i:i + 2]), dim)
                 for i in range(0, len(inputs), 2)]
    except ContractViolation as exc:
        _fail(str(exc))
    if not np.allclose(full[:1], single, atol=atol):
        _fail("encode() results depend on the batch size (first item alone differs)")
    if not np.allclose(full, np.concatenate(split), atol=atol):
        _fail("encode() results depend on the batch size (batches of 2 differ)")
    fingerprint = getattr(encoder, "fingerprint", None)
    if fingerprint is not None:
        first, second = fingerprint(), fingerprint()
        if not isinstance(first, str) or not first or first != second:
            _fail("fingerprint() must return the same non-empty string every call")
    return full


def check_image_encoder(encoder: Any, images: list | None = None, atol: float = 1e-3) -> None:
    """Check ``dim``, ``encode`` shapes/dtypes/finiteness, batch-size invariance, fingerprint."""
    _check_encoder(encoder, images or sample_images(), atol)


def check_text_encoder(encoder: Any, texts: list[str] | None = None, atol: float = 1e-3) -> None:
    """As :func:`check_image_encoder`, for text (including an empty string)."""
    _check_encoder(encoder, texts or SAMPLE_TEXTS, atol)
