"""One bench row: what one artifact (or the PyTorch original) measured, and the code that measures it.

A row measures, in this order: load time and first inference, the model alone (warm-up calls, then ``runs``
timed calls), the per-person pipeline without and with flip test (its own stages, timed through the
pipeline's hook), peak RSS growth over load and inference, and last the accuracy on the dataset through
:func:`edgepose.evaluate.evaluate_dataset`. A row that fails (unreadable artifact, engine not installed, no
metadata) keeps a one-line reason; the caller goes on with the other rows.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import EvalData
from ..errors import EdgeposeError
from ..processing import TopDownPipeline, input_kind_of
from ..spec import ModelSpec, check_artifact_model
from .config import BenchConfig
from .data import artifact_files, artifact_size, guess_precision, one_line
from .int8 import int8_control
from .machine import PeakMemory
from .timing import summarize, time_calls, time_pipeline

log = logging.getLogger(__name__)


@dataclass
class BenchRow:
    """Every figure of one row; ``to_dict`` is the JSON form that reports, plots and remote merges read."""

    name: str
    path: str
    reference: bool = False
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine: str | None = None
    format: str | None = None  # the runtime's format name ("onnx", "tflite", "openvino", "pytorch")
    precision: str = "unknown"  # the artifact's declared precision
    precision_used: str | None = None  # what the engine reports it computed in
    rewrites: list[str] = field(default_factory=list)  # graph rewrites applied at conversion (metadata)
    size_bytes: int | None = None
    files: list[str] = field(default_factory=list)
    load_s: float | None = None
    first_inference_ms: float | None = None
    model: dict[str, Any] | None = None  # latency summary of the model alone (timing.summarize)
    memory: dict[str, Any] | None = None
    pipeline: dict[str, Any] | None = None  # {"no_flip": ..., "flip": ..., "flip_cost_ms": ...}
    runtime_info: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    fallback: str | None = None
    batch_sweep: list[dict[str, Any]] | None = None
    metadata_reference: dict[str, Any] | None = None  # the PyTorch accuracy the artifact's convert recorded
    int8_control: dict[str, Any] | None = None  # INT8 drop on the control split, float layers (convert --max-drop)
    accuracy: dict[str, Any] | None = None  # {"metrics": {...}, later "metric", "value", "delta", "pass", ...}
    runtime_options: dict[str, Any] = field(default_factory=dict)  # asked of the runtime (--strict-precision)

    def fail(self, exc: BaseException) -> BenchRow:
        self.status, self.error = "failed", one_line(exc)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preimport(engine: str) -> None:
    """Import the engine's library before a row's measurements, so that the first artifact of an engine is not
    charged for the import (load time and memory then compare like with like); a missing one is reported by
    the runtime's own load."""
    from ..runtimes import RUNTIMES

    cls = RUNTIMES.get(engine)
    for name in cls.modules if cls else ():
        try:
            importlib.import_module(name)
            return
        except Exception:  # noqa: BLE001 - a missing or broken engine is reported by the runtime's load
            continue


def options_tag(runtime_options: dict[str, Any]) -> str:
    """`` [inference_precision=f32]``: how a row's name and label show the runtime options it was asked for."""
    return " [" + ", ".join(f"{k}={v}" for k, v in runtime_options.items()) + "]" if runtime_options else ""


def bench_row(
    cfg: BenchConfig,
    spec: ModelSpec,
    path: Path,
    data: EvalData | None,
    sample: tuple[np.ndarray, np.ndarray],
    engine: str | None = None,
    reference: bool = False,
    **runtime_options: Any,
) -> BenchRow:
    """Measure one artifact; never raises for the artifact's own faults (the row says ``failed`` and why)."""
    from ..runtimes import RUNTIMES, engine_for, load_runtime
    from ..runtimes.artifact import read_metadata

    row = BenchRow(path.name, str(path), reference=reference)
    if runtime_options and not reference:
        row.runtime_options = dict(runtime_options)
        row.name += options_tag(runtime_options)
    rt = None
    try:
        row.size_bytes = artifact_size(path)
        row.files = [p.name for p in artifact_files(path)]
        meta = {} if reference else read_metadata(path)
        row.engine = engine = engine or engine_for(path)
        row.format = RUNTIMES[engine].format
        row.precision = "fp32" if reference else guess_precision(path, meta)
        preimport(engine)
        gc.collect()
        image, boxes = sample
        boxes = np.repeat(boxes[:1], cfg.batch, axis=0)
        with PeakMemory() as mem:
            t0 = time.perf_counter_ns()
            rt = load_runtime(path, engine=engine, threads=cfg.threads, device=cfg.device,
                              allow_fallback=cfg.allow_fallback, **runtime_options)  # fmt: skip
            row.load_s = (time.perf_counter_ns() - t0) / 1e9
            meta = meta or dict(rt.metadata or {})
            if not meta and not reference:
                raise EdgeposeError(f"{path}: no metadata (neither embedded nor in {path.name}.json); "
                                    "cannot tell which model and pre-processing it expects")  # fmt: skip
            check_model(path, spec, meta)
            if row.precision == "unknown":
                row.precision = guess_precision(path, meta)
            row.rewrites = list((meta.get("conversion") or {}).get("graph_rewrites") or [])
            pipe = TopDownPipeline(spec, flip_test=False, input_kind=input_kind_of(rt))
            x = pipe.preprocess(image, *pipe.boxes_to_center_scale(boxes))
            t0 = time.perf_counter_ns()
            out = rt(x)
            row.first_inference_ms = (time.perf_counter_ns() - t0) / 1e6
            expect = (cfg.batch, spec.num_keypoints, spec.heatmap_size[1], spec.heatmap_size[0])
            if tuple(out.shape) != expect:
                raise EdgeposeError(f"{path}: output shape {tuple(out.shape)}, expected {expect}")
            row.model = summarize(time_calls(lambda: rt(x), cfg.runs, cfg.warmup), items=cfg.batch)
        row.memory = {"peak_rss_delta_bytes": mem.delta, "method": mem.method}
        no_flip = time_pipeline(spec, rt, image, boxes, False, cfg.runs, cfg.warmup)
        flip = time_pipeline(spec, rt, image, boxes, True, cfg.runs, cfg.warmup)
        row.pipeline = {"no_flip": no_flip, "flip": flip, "flip_cost_ms": flip["p50_ms"] - no_flip["p50_ms"]}
        info = safe_info(rt)
        row.runtime_info = info
        row.device, row.fallback = info.get("device", "cpu"), info.get("fallback")
        if row.fallback:
            row.flags.append(f"ran on {row.device}, not {cfg.device}: {row.fallback}")
        if cfg.batch_sizes:
            from .batch import batch_sweep

            row.batch_sweep = batch_sweep(spec, rt, image, boxes[:1], cfg.batch_sizes, cfg.runs, cfg.warmup,
                                          progress=cfg.progress)  # fmt: skip
        row.precision_used = precision_used(info, row.precision)
        rec = meta.get("reference_accuracy")
        row.metadata_reference = rec if isinstance(rec, dict) else None
        row.int8_control = int8_control(meta)
        if data is not None:
            row.accuracy = {"metrics": evaluate_row(cfg, spec, rt, data, path)}
    except Exception as e:  # noqa: BLE001 - any failure of one artifact must leave the other rows running
        row.fail(e)
    finally:
        rt = None  # release the engine before the next row
        gc.collect()
    return row


def check_model(path: Path, spec: ModelSpec, meta: dict) -> None:
    """The artifact must be for ``spec`` (:func:`edgepose.spec.check_artifact_model`, as predict and eval)."""
    check_artifact_model(path, spec, meta)


def safe_info(rt: Any) -> dict[str, Any]:
    try:
        return {k: v for k, v in rt.info().items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    except Exception as e:  # noqa: BLE001
        return {"error": one_line(e)}


def precision_used(info: dict[str, Any], declared: str) -> str:
    """The precision the engine reports it computed in (OpenVINO may run an FP32 model in bf16 on AMX)."""
    for key in ("precision_used", "inference_precision", "execution_precision"):
        if info.get(key):
            return norm_precision(str(info[key]))
    return norm_precision(str(info.get("precision") or declared))


def norm_precision(p: str) -> str:
    p = p.lower().replace("<type: '", "").strip("'> ")
    return {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "i8": "int8", "u8": "int8",
            "bfloat16": "bf16"}.get(p, p)  # fmt: skip


def evaluate_row(cfg: BenchConfig, spec: ModelSpec, rt: Any, data: EvalData, path: Path) -> dict[str, float]:
    from ..evaluate import evaluate

    try:
        res = evaluate(spec, rt, data.dataset, str(data.ann), str(data.images),
                       bbox_file=str(data.bbox_file) if data.bbox_file else None, flip_test=cfg.flip_test,
                       batch_size=cfg.eval_batch, progress=cfg.progress)  # fmt: skip
    except EdgeposeError:
        raise
    except Exception as e:  # noqa: BLE001
        raise EdgeposeError(f"{path}: evaluation failed ({one_line(e)})") from None
    return {k: float(v) for k, v in dict(res.metrics).items() if isinstance(v, (int, float, np.floating))}


def reference_row(cfg: BenchConfig, spec: ModelSpec, source: str, data, sample) -> BenchRow:
    """The PyTorch FP32 original, measured like any artifact (the accuracy reference)."""
    from ..checkpoint import resolve_checkpoint

    try:
        path = resolve_checkpoint(source, progress=cfg.progress, sha256=getattr(cfg, "reference_sha256", None))
    except EdgeposeError as e:
        row = BenchRow(Path(source).name, str(source), reference=True, engine="torch", format="pytorch",
                       precision="fp32")  # fmt: skip
        return row.fail(e)
    row = bench_row(cfg, spec, Path(path), data, sample, engine="torch", reference=True, model=spec.name,
                    source=str(source))  # fmt: skip
    row.name = f"PyTorch FP32 ({Path(path).name})"
    return row
