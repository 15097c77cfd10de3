"""Timing with hyperfine's discipline, inside Python: warm-up calls, many timed calls, medians and percentiles.

Each call is timed on its own with ``time.perf_counter_ns`` while the garbage collector is paused, so that a
collection never lands inside a measurement; results are summarised as percentiles, never one shot.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..processing import TopDownPipeline, merge_flip
from ..spec import ModelSpec


def summarize(ns: Sequence[int] | np.ndarray, items: int = 1) -> dict[str, float]:
    """Latency statistics in milliseconds (linear-interpolated percentiles) and throughput in items/s."""
    a = np.asarray(ns, dtype=np.float64) / 1e6
    if a.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    mean = float(a.mean())
    return {
        "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
        "std_ms": float(a.std()), "min_ms": float(a.min()), "max_ms": float(a.max()), "n": int(a.size),
        "throughput_per_s": items * 1000.0 / mean if mean > 0 else float("inf"),
    }  # fmt: skip


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """``warmup`` untimed calls, then ``runs`` timed ones (ns each), with the garbage collector paused."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs, dtype=np.int64)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            t0 = time.perf_counter_ns()
            fn()
            out[i] = time.perf_counter_ns() - t0
    finally:
        if enabled:
            gc.enable()
    return out


def time_pipeline(
    spec: ModelSpec, infer: Callable, image: np.ndarray, boxes: np.ndarray, flip: bool, runs: int, warmup: int
) -> dict[str, Any]:
    """The per-person pipeline (box -> crop+normalise -> model [-> flipped model + merge] -> decode), per stage."""
    pipe = TopDownPipeline(spec, flip_test=flip)
    stages = np.zeros((runs, 4), dtype=np.int64)  # pre, infer, flip (second pass + merge), decode

    def once(row: np.ndarray | None) -> None:
        t0 = time.perf_counter_ns()
        centers, scales = pipe.boxes_to_center_scale(boxes)
        batch = pipe.preprocess(image, centers, scales)
        t1 = time.perf_counter_ns()
        heatmaps = infer(batch)
        t2 = time.perf_counter_ns()
        if flip:
            flipped = infer(np.ascontiguousarray(batch[..., ::-1]))
            heatmaps = merge_flip(heatmaps, flipped, spec.flip_pairs, spec.shift_heatmap)
        t3 = time.perf_counter_ns()
        pipe.decode(heatmaps, centers, scales)
        t4 = time.perf_counter_ns()
        if row is not None:
            row[:] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

    for _ in range(warmup):
        once(None)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            once(stages[i])
    finally:
        if enabled:
            gc.enable()
    med = np.median(stages, axis=0) / 1e6
    pre_post = np.median(stages[:, 0] + stages[:, 3]) / 1e6
    model = np.median(stages[:, 1] + stages[:, 2]) / 1e6
    out = summarize(stages.sum(axis=1), items=len(boxes))
    out.update(
        pre_ms=float(med[0]), infer_ms=float(med[1]), flip_ms=float(med[2]), decode_ms=float(med[3]),
        pre_post_ms=float(pre_post), overhead_pct=float(100.0 * pre_post / model) if model > 0 else None,
    )  # fmt: skip
    return out
