"""``edgepose bench``: every artifact's accuracy and speed, side by side, on the machine at hand.

One row per artifact plus the PyTorch FP32 original (the reference). A row measures, in this order: load time
and first inference, then the model alone (warm-up calls, then ``runs`` timed calls, ``perf_counter_ns``), the
per-person pipeline without and with flip test (crop+normalise / inference / flip / decode timed separately),
peak RSS growth over load and inference, and last the accuracy on the dataset through
:func:`edgepose.evaluate.evaluate`. A row that fails (unreadable artifact, engine not installed, no metadata)
is kept with a one-line reason; the other rows still run. Rendering (table, Markdown, plot) lives in
:mod:`edgepose.bench_report`.
"""

from __future__ import annotations

import gc
import importlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeposeError
from ..processing import TopDownPipeline
from ..spec import DEFAULT_MODEL, ModelSpec, get_spec, spec_from_metadata
from . import machine as sysinfo
from .data import (
    EvalData,
    artifact_files,
    artifact_size,
    discover_artifacts,
    guess_precision,
    one_line,
    read_artifact_metadata,
    resolve_dataset,
    timing_sample,
)
from .int8 import int8_control
from .timing import summarize, time_calls, time_pipeline

SCHEMA = "edgepose.bench/1"
# The headline metric of each dataset's evaluation (the name edgepose.evaluate reports it under).
MAIN_METRIC = {"coco_ap": "AP", "pckh": "PCKh", "hand_pck": "PCK@0.2", "hand_pckh": "PCKh@0.7"}
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
    batch_sizes: Sequence[int] = ()  # batched sweep (edgepose.bench_batch); empty: none
    eval_batch: int = 16
    progress: bool = True


@dataclass
class BenchReport:
    machine: dict[str, Any]
    config: dict[str, Any]
    model: str
    metric: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def artifact_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r.get("reference")]

    @property
    def all_failed(self) -> bool:
        rows = self.artifact_rows
        return bool(rows) and all(r["status"] == "failed" for r in rows)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "metric": self.metric, "machine": self.machine,
                "config": self.config, "notes": self.notes, "rows": self.rows}  # fmt: skip


def _preimport(engine: str) -> None:
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


def _log(cfg: BenchConfig, msg: str) -> None:
    if cfg.progress:
        print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- rows
def bench_row(
    cfg: BenchConfig,
    spec: ModelSpec,
    path: Path,
    data: EvalData | None,
    sample: tuple[np.ndarray, np.ndarray],
    engine: str | None = None,
    reference: bool = False,
    **runtime_options: Any,
) -> dict[str, Any]:
    """Measure one artifact; never raises for the artifact's own faults (the row says ``failed`` and why)."""
    from ..runtimes import engine_for, load_runtime

    row: dict[str, Any] = {"name": path.name, "path": str(path), "reference": reference, "status": "ok",
                           "error": None, "flags": [], "notes": []}  # fmt: skip
    rt = None
    try:
        row["size_bytes"] = artifact_size(path)
        row["files"] = [p.name for p in artifact_files(path)]
        meta = {} if reference else read_artifact_metadata(path)
        engine = engine or engine_for(path)
        row.update(engine=engine, format=path.suffix.lstrip(".").lower(), precision=guess_precision(path, meta))
        if reference:
            row["precision"] = "fp32"
        _preimport(engine)
        gc.collect()
        image, boxes = sample
        boxes = np.repeat(boxes[:1], cfg.batch, axis=0)
        with sysinfo.PeakMemory() as mem:
            t0 = time.perf_counter_ns()
            rt = load_runtime(path, engine=engine, threads=cfg.threads, device=cfg.device,
                              allow_fallback=cfg.allow_fallback, **runtime_options)  # fmt: skip
            row["load_s"] = (time.perf_counter_ns() - t0) / 1e9
            meta = meta or dict(rt.metadata or {})
            if not meta and not reference:
                raise EdgeposeError(f"{path}: no metadata (neither embedded nor in {path.name}.json); "
                                    "cannot tell which model and pre-processing it expects")  # fmt: skip
            _check_model(path, spec, meta)
            if row["precision"] == "unknown":
                row["precision"] = guess_precision(path, meta)
            pipe = TopDownPipeline(spec, flip_test=False)
            x = pipe.preprocess(image, *pipe.boxes_to_center_scale(boxes))
            t0 = time.perf_counter_ns()
            out = rt(x)
            row["first_inference_ms"] = (time.perf_counter_ns() - t0) / 1e6
            expect = (cfg.batch, spec.num_keypoints, spec.heatmap_size[1], spec.heatmap_size[0])
            if tuple(out.shape) != expect:
                raise EdgeposeError(f"{path}: output shape {tuple(out.shape)}, expected {expect}")
            row["model"] = summarize(time_calls(lambda: rt(x), cfg.runs, cfg.warmup), items=cfg.batch)
        row["memory"] = {"peak_rss_delta_bytes": mem.delta, "method": mem.method}
        row["pipeline"] = {
            "no_flip": time_pipeline(spec, rt, image, boxes, False, cfg.runs, cfg.warmup),
            "flip": time_pipeline(spec, rt, image, boxes, True, cfg.runs, cfg.warmup),
        }
        row["pipeline"]["flip_cost_ms"] = row["pipeline"]["flip"]["p50_ms"] - row["pipeline"]["no_flip"]["p50_ms"]
        info = _safe_info(rt)
        row["runtime_info"] = info
        row["device"], row["fallback"] = info.get("device", "cpu"), info.get("fallback")
        if row["fallback"]:
            row["flags"].append(f"ran on {row['device']}, not {cfg.device}: {row['fallback']}")
        if cfg.batch_sizes:
            from .batch import batch_sweep

            row["batch_sweep"] = batch_sweep(spec, rt, image, boxes[:1], cfg.batch_sizes, cfg.runs, cfg.warmup,
                                             progress=cfg.progress)  # fmt: skip
        row["precision_used"] = _precision_used(info, row["precision"])
        row["metadata_reference"] = _metadata_reference(meta)
        row["int8_control"] = int8_control(meta)  # plain/controlled INT8 drop, float layers (convert --max-drop)
        if data is not None:
            row["accuracy"] = {"metrics": _evaluate(cfg, spec, rt, data, path)}
    except Exception as e:  # noqa: BLE001 - any failure of one artifact must leave the other rows running
        row["status"], row["error"] = "failed", one_line(e)
    finally:
        rt = None  # release the engine before the next row
        gc.collect()
    return row


def _check_model(path: Path, spec: ModelSpec, meta: dict) -> None:
    name = (meta.get("model") or {}).get("name") if isinstance(meta.get("model"), dict) else meta.get("model")
    if name and name != spec.name:
        raise EdgeposeError(f"{path}: artifact is for model {name}, not {spec.name} (pass --model {name})")
    if meta.get("model"):
        k = spec_from_metadata(meta).num_keypoints
        if k != spec.num_keypoints:
            raise EdgeposeError(f"{path}: artifact has {k} keypoints, model {spec.name} has {spec.num_keypoints}")


def _safe_info(rt: Any) -> dict[str, Any]:
    try:
        return {k: v for k, v in rt.info().items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    except Exception as e:  # noqa: BLE001
        return {"error": one_line(e)}


def _precision_used(info: dict[str, Any], declared: str) -> str:
    """The precision the engine reports it computed in (OpenVINO may run an FP32 model in bf16 on AMX)."""
    for key in ("inference_precision", "precision_used", "execution_precision"):
        if info.get(key):
            return _norm_precision(str(info[key]))
    return _norm_precision(str(info.get("precision") or declared))


def _norm_precision(p: str) -> str:
    p = p.lower().replace("<type: '", "").strip("'> ")
    return {
        "f32": "fp32",
        "float32": "fp32",
        "f16": "fp16",
        "float16": "fp16",
        "i8": "int8",
        "u8": "int8",
        "bfloat16": "bf16",
    }.get(p, p)


def _metadata_reference(meta: dict) -> dict[str, Any] | None:
    """The PyTorch reference accuracy an artifact's metadata records (for devices without torch)."""
    for key in ("reference_accuracy", "reference_metrics"):
        if isinstance(meta.get(key), dict):
            return meta[key]
    acc = meta.get("accuracy")
    if isinstance(acc, dict) and isinstance(acc.get("reference"), dict):
        return acc["reference"]
    return None


def _evaluate(cfg: BenchConfig, spec: ModelSpec, rt: Any, data: EvalData, path: Path) -> dict[str, float]:
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


# ------------------------------------------------------------------------------------------------ run
def run_bench(cfg: BenchConfig) -> BenchReport:
    """Bench every artifact (and the PyTorch original) for one model; see the module docstring."""
    spec = get_spec(cfg.model or _model_of(cfg.artifacts) or DEFAULT_MODEL)
    if cfg.runs < 1 or cfg.warmup < 0 or cfg.batch < 1:
        raise EdgeposeError("--runs and --batch must be at least 1 and --warmup at least 0")
    from ..runtimes.devices import normalize_device

    cfg.device = normalize_device(cfg.device)
    if any(int(b) < 1 for b in cfg.batch_sizes):
        raise EdgeposeError("--batch-sizes: every batch size must be at least 1")
    cfg.threads = cfg.threads or sysinfo.usable_cpus()
    dirs = list(cfg.artifacts) or [Path("artifacts") / spec.name]
    paths = discover_artifacts(dirs)
    if not paths:
        where = ", ".join(map(str, dirs))
        raise EdgeposeError(f"{where}: no artifacts found; make them with: edgepose convert --model {spec.name}")
    metric = MAIN_METRIC.get(spec.info.metric)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
    config["artifacts"] = [str(p) for p in dirs]
    report = BenchReport(sysinfo.machine_info(cfg.threads), config, spec.name, metric)
    with tempfile.TemporaryDirectory(prefix="edgepose-bench-") as tmp:
        data, note = resolve_dataset(spec, cfg.ann, cfg.images, cfg.bbox_file, cfg.dataset, cfg.limit,
                                     cfg.accuracy, Path(tmp))  # fmt: skip
        if note:
            report.notes.append(note)
        if data is not None:
            report.config["dataset"] = {"name": data.dataset, "ann": str(data.ann), "images": str(data.images),
                                        "bbox_file": str(data.bbox_file) if data.bbox_file else None,
                                        "num_images": data.num_images, "limit": cfg.limit}  # fmt: skip
        image, boxes, source = timing_sample(data)
        report.config["timing_input"] = {"image": source, "box_xywh": [float(v) for v in boxes[0]]}
        jobs: list[tuple[Path, dict[str, Any]]] = [(p, {}) for p in paths]
        ref_source = spec.checkpoint if cfg.reference is None else cfg.reference
        if ref_source:
            jobs.append((Path(ref_source), {"reference": True}))  # last: torch's thread pool outlives its row
        for i, (path, kw) in enumerate(jobs, 1):
            _log(cfg, f"[{i}/{len(jobs)}] {path.name}")
            if kw.get("reference"):
                row = _reference_row(cfg, spec, ref_source, data, (image, boxes))
            else:
                row = bench_row(cfg, spec, path, data, (image, boxes))
            _log(cfg, f"[{i}/{len(jobs)}] {path.name}: " + (row["error"] or _row_summary(row, metric)))
            report.rows.append(row)
    report.machine["load_average_end"] = sysinfo.load_average()
    report.rows.sort(key=lambda r: not r["reference"])  # the reference first
    finish(report, cfg)
    return report


def _model_of(artifacts: Sequence[str | Path]) -> str | None:
    """The registered model that the first given artifact's metadata names (so --model may be left out)."""
    from ..spec import MODELS

    try:
        first = next(iter(discover_artifacts(artifacts)), None) if artifacts else None
        model = read_artifact_metadata(first).get("model") if first else None
    except EdgeposeError:
        return None
    name = model.get("name") if isinstance(model, dict) else None
    return name if name in MODELS else None


def _reference_row(cfg: BenchConfig, spec: ModelSpec, source: str, data, sample) -> dict[str, Any]:
    from ..checkpoint import resolve_checkpoint

    try:
        path = resolve_checkpoint(source, progress=cfg.progress)
    except EdgeposeError as e:
        return {"name": Path(source).name, "path": str(source), "reference": True, "status": "failed",
                "error": one_line(e), "engine": "torch", "format": "pth", "precision": "fp32", "flags": [],
                "notes": []}  # fmt: skip
    row = bench_row(cfg, spec, Path(path), data, sample, engine="torch", reference=True, model=spec.name,
                    source=str(source))  # fmt: skip
    row["name"] = f"PyTorch FP32 ({Path(path).name})"
    return row


def _row_summary(row: dict[str, Any], metric: str | None) -> str:
    m = row.get("model", {})
    acc = (row.get("accuracy") or {}).get("metrics", {})
    s = f"p50 {m.get('p50_ms', float('nan')):.2f} ms"
    return s + (f", {metric} {acc[metric]:.4f}" if metric in acc else "")


def max_drop_for(precision: str, override: float | None) -> float:
    if override is not None:
        return override
    return DEFAULT_MAX_DROP.get(precision, DEFAULT_MAX_DROP["int8"])


def finish(report: BenchReport, cfg: BenchConfig) -> None:
    """Accuracy deltas against the PyTorch original, pass/fail, and the flags that need several rows."""
    metric = report.metric
    ref = next((r for r in report.rows if r["reference"]), None)
    ref_value, ref_from = None, None
    if ref and ref["status"] == "ok" and metric in (ref.get("accuracy") or {}).get("metrics", {}):
        ref_value, ref_from = ref["accuracy"]["metrics"][metric], "measured (PyTorch FP32 on this machine)"
    elif metric:
        n = (report.config.get("dataset") or {}).get("num_images")
        for r in report.artifact_rows:
            rec = r.get("metadata_reference") or {}
            same_data = rec.get("num_images") in (None, n) and not cfg.limit
            if metric in rec and same_data:
                ref_value, ref_from = float(rec[metric]), f"artifact metadata ({r['name']})"
                break
        if ref_value is None and any(r.get("accuracy") for r in report.rows):
            why = ref["error"] if ref and ref.get("error") else "no reference row"
            report.notes.append(f"no reference accuracy ({why}); accuracy deltas omitted")
    report.config["reference_accuracy"] = {"value": ref_value, "source": ref_from}
    for r in report.rows:
        acc = r.get("accuracy")
        if not acc or metric not in acc["metrics"]:
            continue
        acc["metric"], acc["value"] = metric, acc["metrics"][metric]
        if ref_value is not None and not r["reference"]:
            acc["reference"], acc["delta"] = ref_value, acc["value"] - ref_value
            acc["max_drop"] = max_drop_for(r.get("precision", "unknown"), cfg.max_drop)
            acc["pass"] = bool(-acc["delta"] <= acc["max_drop"] + 1e-12)
            if not acc["pass"]:
                r["flags"].append(f"accuracy drop {-acc['delta']:.4f} > {acc['max_drop']:g}")
    ok = [r for r in report.rows if r["status"] == "ok"]
    for r in ok:
        if r.get("precision") == "fp32" and r.get("precision_used") not in (None, "fp32"):
            r["flags"].append(f"FP32 artifact ran in {r['precision_used']}")
        over = r["pipeline"]["no_flip"].get("overhead_pct")
        if over is not None and over > OVERHEAD_TARGET_PCT:
            r["flags"].append(f"pre/post {over:.1f}% of inference (target < {OVERHEAD_TARGET_PCT:g}%)")
    for r in ok:
        if r.get("precision") != "int8":
            continue
        for twin in ok:
            if twin is r or twin["reference"] or twin.get("engine") != r.get("engine"):
                continue
            if twin.get("precision") in ("fp32", "fp16") and twin["model"]["p50_ms"] < r["model"]["p50_ms"]:
                r["flags"].append(f"INT8 slower than its {twin['precision'].upper()} twin "
                                  f"({r['model']['p50_ms']:.2f} vs {twin['model']['p50_ms']:.2f} ms)")  # fmt: skip
