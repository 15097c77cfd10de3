"""Timing with hyperfine's discipline, inside Python: warm-up calls, many timed calls, medians and percentiles.

One loop, :func:`time_stages`, times everything: a function is run ``warmup`` times untimed, then ``runs`` times
with the garbage collector paused, and every call reports when each of its stages ended through a ``tick``
callback (``time.perf_counter_ns``). The per-person pipeline is timed through the ``tick`` hook of
:class:`edgepose.processing.TopDownPipeline` itself, so the stages timed are the code that runs in eval and
predict, not a re-spelling of it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..processing import TopDownPipeline, input_kind_of
from ..spec import ModelSpec

Tick = Callable[[str], None]


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


def time_stages(fn: Callable[[Tick], object], runs: int, warmup: int) -> dict[str, np.ndarray]:
    """Run ``fn(tick)`` ``warmup`` times untimed, then ``runs`` times timed; ``fn`` calls ``tick(name)`` after each
    stage. Returns nanoseconds per stage per run (stages in the order first seen), plus ``"total"``."""
    for _ in range(warmup):
        fn(_no_tick)
    marks: list[tuple[str, int]] = []
    rows: list[list[tuple[str, int]]] = []
    tick = lambda name: marks.append((name, time.perf_counter_ns()))  # noqa: E731
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            marks = []
            t0 = time.perf_counter_ns()
            fn(tick)
            t1 = time.perf_counter_ns()
            rows.append([("", t0), *marks, ("", t1)])
    finally:
        if enabled:
            gc.enable()
    names = list(dict.fromkeys(name for row in rows for name, _ in row[1:-1]))
    out = {n: np.zeros(runs, dtype=np.int64) for n in names}
    out["total"] = np.zeros(runs, dtype=np.int64)
    for i, row in enumerate(rows):
        for (_, a), (name, b) in zip(row[:-2], row[1:-1]):
            out[name][i] += b - a
        out["total"][i] = row[-1][1] - row[0][1]
    return out


def _no_tick(_name: str) -> None:
    return None


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """``warmup`` untimed calls, then ``runs`` timed ones (ns each), with the garbage collector paused."""
    return time_stages(lambda _tick: fn(), runs, warmup)["total"]


def time_pipeline(
    spec: ModelSpec, infer: Callable, image: np.ndarray, boxes: np.ndarray, flip: bool, runs: int, warmup: int
) -> dict[str, Any]:
    """The per-person pipeline (box -> crop+normalise -> model [-> flipped model + merge] -> decode), per stage,
    timed through the pipeline's own stage hook."""
    pipe = TopDownPipeline(spec, flip_test=flip, input_kind=input_kind_of(infer))
    st = time_stages(lambda tick: pipe(infer, image, boxes, tick=tick), runs, warmup)
    zero = np.zeros(runs, dtype=np.int64)
    pre, inf, flp, dec = (st.get(k, zero) for k in ("pre", "infer", "flip", "decode"))
    pre_post = float(np.median(pre + dec) / 1e6)
    model = float(np.median(inf + flp) / 1e6)
    out = summarize(st["total"], items=len(boxes))
    out.update(
        pre_ms=float(np.median(pre) / 1e6), infer_ms=float(np.median(inf) / 1e6),
        flip_ms=float(np.median(flp) / 1e6), decode_ms=float(np.median(dec) / 1e6), pre_post_ms=pre_post,
        overhead_pct=100.0 * pre_post / model if model > 0 else None,
    )  # fmt: skip
    return out
