"""What ``edgepose bench`` is asked to do (:class:`BenchConfig`) and the budgets it judges rows by.

The bottom of the bench package: it imports nothing else of it, so a row, the Ray and SSH paths and the
report all read the same configuration and the same accuracy budget (:func:`max_drop_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchConfig", "DEFAULT_MAX_DROP", "OVERHEAD_TARGET_PCT", "SCHEMA", "max_drop_for"]

SCHEMA = "edgepose.bench/2"
# Largest accepted accuracy drop against the PyTorch FP32 original, in the metric's own units (AP, PCK are
# fractions 0..1): float artifacts must match (1 point), full-integer quantisation may cost up to 3 points.
DEFAULT_MAX_DROP = {"fp32": 0.01, "fp16": 0.01, "int8": 0.03}
OVERHEAD_TARGET_PCT = 5.0


@dataclass
class BenchConfig:
    """Everything ``edgepose bench`` needs; the defaults bench the demo model's artifacts offline."""

    model: str | None = None  # None: DEFAULT_MODEL
    artifacts: Sequence[str | Path] = ()  # files and/or directories; empty: artifacts/<model>/
    reference: str | None = None  # checkpoint for the PyTorch row; None: the spec's own; "": no reference row
    reference_sha256: str | None = None  # expected sha256 (or prefix) of the reference checkpoint
    dataset: str | None = None  # dataset format (coco, mpii, ...); None: the spec's
    ann: str | None = None
    images: str | None = None
    bbox_file: str | None = None
    limit: int | None = None  # evaluate on the first N images only (COCO-format annotation files)
    accuracy: bool = True
    flip_test: bool = True
    threads: int | None = None  # None: every usable CPU
    runs: int = 100
    warmup: int = 10
    batch: int = 1
    max_drop: float | None = None  # None: DEFAULT_MAX_DROP by precision
    device: str = "cpu"  # cpu, cuda, cuda:N, tensorrt, gpu (see edgepose.runtimes.devices)
    allow_fallback: bool = False  # run on CPU (and say so in the row) when the device is missing
    batch_sizes: Sequence[int] = ()  # batched sweep (edgepose.bench.batch); empty: none
    eval_batch: int = 16
    strict_precision: bool = False  # also bench each artifact with its engine's strict_options (float32 compute)
    progress: bool = True
    ray: str | None = None  # accuracy rows on Ray: a cluster address, "" for the default (see edgepose.scale)
    ray_ship_crops: bool = False  # Ray workers get crops from this machine instead of reading --images
    isolate: bool = True  # each row in a child process: an engine crash fails its row, not the bench
    # --frames: the frame bench after the rows (edgepose.bench.frames): {"detectors": [...], "persons": [...],
    # "det_every": K, "frame_count": N, "rounds": R}; None: no frame bench
    frames: dict | None = None


def max_drop_for(precision: str, override: float | None) -> float:
    """The accuracy budget of an artifact of ``precision``: ``override`` (``--max-drop``) when given."""
    if override is not None:
        return override
    return DEFAULT_MAX_DROP.get(precision, DEFAULT_MAX_DROP["int8"])
