"""Batched sweep for ``edgepose bench --batch-sizes``: one inference call for many person crops.

For each batch size B the same box is cropped B times from the timing image and the three stages are timed
separately per call (``perf_counter_ns``, garbage collector paused): crop+normalise (CPU), inference (the
runtime call, which includes host<->device copies on a GPU), decode (CPU). A row gives the latency per batch,
crops per second of the model alone and of the whole pipeline, and the pre/post share of the pipeline time,
which tells whether the CPU work would dominate on a fast accelerator.

Timed calls per size shrink with the batch (``max(min_runs, runs // B)``) so a CPU sweep to 128 stays short.
An artifact with a fixed batch (``rt.batch_size`` not None, e.g. a batch-1 ONNX export) is called in chunks of
that size by :class:`edgepose.runtimes.Runtime`; the row records it (``engine_batch``): use
``edgepose convert --dynamic-batch`` for true batched inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from ..processing import TopDownPipeline, input_kind_of
from ..spec import ModelSpec
from .timing import summarize, time_stages

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 8, 32, 128)


def parse_batch_sizes(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"1,8,32"`` (or a list) -> (1, 8, 32); every size at least 1."""
    from ..errors import EdgeposeError

    if text is None or text == "":
        return ()
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    try:
        sizes = tuple(int(v) for v in items)
    except ValueError:
        raise EdgeposeError(f"--batch-sizes {text}: expected integers such as 1,8,32,128") from None
    if not sizes or min(sizes) < 1:
        raise EdgeposeError(f"--batch-sizes {text}: every batch size must be at least 1")
    return sizes


def time_batch(
    spec: ModelSpec, infer: Callable[[np.ndarray], np.ndarray], image: np.ndarray, box: np.ndarray, batch: int,
    runs: int, warmup: int,
) -> dict[str, Any]:
    """One batch size: per-stage medians, model latency statistics, crops/s and the pre/post share."""
    pipe = TopDownPipeline(spec, flip_test=False, input_kind=input_kind_of(infer))
    boxes = np.repeat(np.asarray(box, dtype=np.float32).reshape(-1, 4)[:1], batch, axis=0)
    st = time_stages(lambda tick: pipe(infer, image, boxes, tick=tick), runs, warmup)
    stages = np.stack([st["pre"], st["infer"], st["decode"]], axis=1)  # pre (crop+normalise), infer, decode
    med = np.median(stages, axis=0) / 1e6
    model = summarize(stages[:, 1], items=batch)
    total = summarize(st["total"], items=batch)
    pre_post = float(np.median(stages[:, 0] + stages[:, 2]) / 1e6)
    return {
        "batch": batch, "runs": runs,
        "latency_p50_ms": model["p50_ms"], "latency_p90_ms": model["p90_ms"], "latency_mean_ms": model["mean_ms"],
        "crops_per_s": model["throughput_per_s"],
        "pipeline_p50_ms": total["p50_ms"], "pipeline_crops_per_s": total["throughput_per_s"],
        "pre_ms": float(med[0]), "infer_ms": float(med[1]), "decode_ms": float(med[2]), "pre_post_ms": pre_post,
        "pre_post_share_pct": 100.0 * pre_post / total["p50_ms"] if total["p50_ms"] > 0 else None,
    }  # fmt: skip


def batch_sweep(
    spec: ModelSpec, rt: Any, image: np.ndarray, box: np.ndarray, batch_sizes: Sequence[int], runs: int = 100,
    warmup: int = 10, min_runs: int = 5, progress: bool = False,
) -> list[dict[str, Any]]:
    """:func:`time_batch` for every size; ``rt`` is a runtime (or any NCHW -> NKHW callable)."""
    rows = []
    engine_batch = getattr(rt, "batch_size", None)
    for b in batch_sizes:
        n = max(min_runs, runs // b)
        w = max(1, warmup // b) if warmup else 0
        if progress:
            log.info("bench: batch %d: %d warm-up + %d timed calls", b, w, n)
        row = time_batch(spec, rt, image, box, int(b), n, w)
        row["engine_batch"] = engine_batch
        rows.append(row)
    return rows


def sweep_table(report: dict[str, Any]) -> str:
    """The batched sweep of every row that has one, as a plain-text table (device and fallback included)."""
    lines = ["", "Batched inference (latency per batch; crops/s of the model alone and of the whole pipeline):",
             f"{'artifact':<36} {'device':<8} {'batch':>5} {'p50 ms':>9} {'crops/s':>9} {'pipe/s':>9} "
             f"{'pre ms':>8} {'dec ms':>7} {'pre/post':>8}"]  # fmt: skip
    for r in report.get("rows", []):
        for b in r.get("batch_sweep") or []:
            share = b["pre_post_share_pct"]
            lines.append(f"{r['name'][:36]:<36} {str(r.get('device', '?'))[:8]:<8} {b['batch']:>5} "
                         f"{b['latency_p50_ms']:>9.2f} {b['crops_per_s']:>9.1f} {b['pipeline_crops_per_s']:>9.1f} "
                         f"{b['pre_ms']:>8.2f} {b['decode_ms']:>7.2f} "
                         f"{(f'{share:.0f}%' if share is not None else '-'):>8}")  # fmt: skip
        if r.get("fallback"):
            lines.append(f"  ^ {r['name']}: FALLBACK, ran on {r.get('device')}: {r['fallback']}")
    return "\n".join(lines)
