"""The leakage audit: test images that also appear in the training data, reported once per
task before its cells run (the knowledge base is the training split, so a leaked test image
can retrieve itself)."""

from __future__ import annotations

import logging

from ravlm_bench.knowledge import find_leakage

log = logging.getLogger(__name__)


def audit_leakage(task: str, data) -> None:
    report = find_leakage(data.train.image_ids, data.train.image_paths,
                          data.test.image_ids, data.test.image_paths)
    if not report.clean:
        log.warning("%s: %s", task, report.message())
