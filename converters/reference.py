"""The PyTorch original's accuracy, recorded in every artifact's metadata at conversion.

A device without torch (a Raspberry Pi with numpy, OpenCV and LiteRT) then still reports each artifact's
accuracy drop: ``edgepose bench`` compares against this record when, and only when, it evaluates on the very
same data (identical annotation-file bytes, no detections file, same flip test). Measured once per checkpoint
and data, and cached under ``$EDGEPOSE_CACHE/reference/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable

from edgepose.files import atomic_write, cache_dir, json_text, sha256_of
from edgepose.spec import ModelSpec

log = logging.getLogger(__name__)
VERSION = 1


def cached_record(key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record cached under ``key`` in ``$EDGEPOSE_CACHE/reference/``, else ``measure()``'s, written there
    (atomically) for the next conversion; a damaged cache file is measured again."""
    cached = cache_dir("reference", f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json")
    if cached.is_file():
        try:
            return json.loads(cached.read_text())
        except ValueError:
            pass
    record = measure()
    atomic_write(cached, json_text(record, str(cached), indent=2) + "\n")
    return record


def reference_accuracy(spec: ModelSpec, torch_model: Any, checkpoint_sha256: str) -> dict[str, Any] | None:
    """``{"metric", "value", "metrics", "dataset", "ann", "ann_sha256", "flip_test", ...}`` for the model's default
    evaluation data (the synthetic val split for the demo model); ``None`` when there is none here."""
    from edgepose.datasets import default_data, headline_metric
    from edgepose.evaluate import evaluate

    default = default_data(spec)
    if default is None:
        return None
    dataset, ann, images = default
    ann_sha = sha256_of(ann)

    def measure() -> dict[str, Any]:
        import torch

        log.info("reference accuracy: evaluating the PyTorch original on %s (once; cached)", ann.parent.name)

        def infer(x):
            with torch.inference_mode():
                return torch_model(torch.from_numpy(x)).numpy()

        res = evaluate(spec, infer, dataset, ann, images, flip_test=True, batch_size=16, progress=False)
        metric = headline_metric(dataset)
        return {
            "metric": metric, "value": res.metrics.get(metric), "metrics": res.metrics, "dataset": dataset,
            "ann": ann.name, "ann_sha256": ann_sha, "bbox_file_sha256": None, "flip_test": True,
            "num_images": res.info["num_images"], "num_samples": res.info["num_samples"],
            "checkpoint_sha256": checkpoint_sha256, "engine": f"torch {torch.__version__} (CPU, FP32)",
        }  # fmt: skip

    return cached_record(f"{VERSION}|{spec.name}|{checkpoint_sha256}|{ann_sha}|flip", measure)
