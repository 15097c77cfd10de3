"""The run of ``edgepose bench``: :func:`run_bench` measures one row per artifact plus the PyTorch FP32 original
(the reference), one after the other, and :func:`finish` adds what needs several rows (accuracy deltas against
the reference, pass/fail, flags).

Interrupted (Ctrl-C, SIGTERM) after a row has finished, :func:`run_bench` raises :class:`BenchInterrupted`
carrying the report of the rows that finished, finished as a whole report is; the command writes it where it
was asked to and exits as an interruption does.
"""

from __future__ import annotations

import logging
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..datasets import EvalData, headline_metric
from ..errors import EdgeposeError
from ..runtimes import RUNTIMES
from ..runtimes.artifact import read_metadata
from ..runtimes.devices import normalize_device
from ..spec import DEFAULT_MODEL, MODELS, ModelSpec, get_spec
from .config import OVERHEAD_TARGET_PCT, BenchConfig, max_drop_for
from .data import bench_data, discover_artifacts, timing_sample
from .isolate import run_isolated
from .machine import load_average, machine_info, thermal, usable_cpus
from .ray import REFERENCE, attach, ray_accuracy
from .report import BenchReport
from .row import BenchRow, bench_row, reference_row

__all__ = ["BenchInterrupted", "finish", "run_bench"]

log = logging.getLogger(__name__)


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while the rows ran: ``report`` holds the rows that finished (finished as a report);
    ``signum`` is the signal, as :class:`~edgepose.errors.Terminated` has it (2 for Ctrl-C)."""

    def __init__(self, report: BenchReport, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.report, self.signum = report, signum


def bench_spec(cfg: BenchConfig) -> ModelSpec:
    """The model a bench is about: ``--model``, else the one the first artifact names, else the demo model."""
    return get_spec(cfg.model or _model_of(cfg.artifacts) or DEFAULT_MODEL)


def run_bench(cfg: BenchConfig) -> BenchReport:
    """Bench every artifact (and the PyTorch original) for one model; see the module docstring."""
    spec = bench_spec(cfg)
    if cfg.runs < 1 or cfg.warmup < 0 or cfg.batch < 1:
        raise EdgeposeError("--runs and --batch must be at least 1 and --warmup at least 0")
    cfg.device = normalize_device(cfg.device)
    if any(int(b) < 1 for b in cfg.batch_sizes):
        raise EdgeposeError("--batch-sizes: every batch size must be at least 1")
    cfg.threads = cfg.threads or usable_cpus()
    dirs = list(cfg.artifacts) or [Path("artifacts") / spec.name]
    paths = discover_artifacts(dirs)
    if not paths:
        where = ", ".join(map(str, dirs))
        raise EdgeposeError(f"{where}: no artifacts found; make them with: edgepose convert --model {spec.name}")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
    config["artifacts"] = [str(p) for p in dirs]
    report = BenchReport(machine_info(cfg.threads), config, spec.name, None)
    with tempfile.TemporaryDirectory(prefix="edgepose-bench-") as tmp:
        data, note = bench_data(cfg, spec, Path(tmp))  # bad data fail here, naming the user's files
        report.metric = headline_metric(data.dataset if data else spec.dataset)
        if note:
            report.notes.append(note)
        if data is not None:
            report.config["dataset"] = data.describe(cfg.limit)
        jobs: list[tuple[Path, bool]] = [(p, False) for p in paths]
        ref_source = spec.checkpoint if cfg.reference is None else cfg.reference
        if ref_source:
            jobs.append((Path(ref_source), True))  # last: torch's thread pool outlives its row
        try:
            _measure(cfg, spec, report, jobs, data, ref_source)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as Terminated: keep the rows that finished
            if not report.rows:
                raise
            signum = getattr(e, "signum", signal.SIGINT)
            how = "Ctrl-C" if signum == signal.SIGINT else f"signal {signum}"
            report.notes.append(f"interrupted ({how}) after {len(report.rows)} row(s): the rows that finished are "
                                "kept, the others did not run")  # fmt: skip
            _close(report, cfg)
            raise BenchInterrupted(report, signum) from None
    _close(report, cfg)
    return report


def _measure(cfg: BenchConfig, spec: ModelSpec, report: BenchReport, jobs: list[tuple[Path, bool]],
             data: EvalData | None, ref_source: str | None) -> None:  # fmt: skip
    """The rows, one after the other, each appended to ``report`` as soon as it has finished."""
    image, boxes, source = timing_sample(data)
    report.config["timing_input"] = {"image": source, "box_xywh": [float(v) for v in boxes[0]]}
    sample = (image, boxes)
    remote = None
    if cfg.ray is not None and data is not None:  # accuracy on Ray first; timing below, here, row by row
        remote, note = ray_accuracy(cfg, spec, jobs, data, ref_source)
        report.notes.append(note)
    row_data = data if remote is None else None
    for i, (path, is_ref) in enumerate(jobs, 1):
        _progress(cfg, f"[{i}/{len(jobs)}] {path.name}")
        if cfg.isolate:
            row = run_isolated(cfg, spec, path, row_data, sample, reference=is_ref, source=ref_source)
        elif is_ref:
            row = reference_row(cfg, spec, ref_source, row_data, sample)
        else:
            row = bench_row(cfg, spec, path, row_data, sample)
        if remote is not None:
            row = attach(row, remote.get(REFERENCE if is_ref else str(path)))
        report.rows.append(row)  # in the report before its line is shown: an interruption from here on keeps it
        _progress(cfg, f"[{i}/{len(jobs)}] {path.name}: " + (row.error or _row_summary(row, report.metric)))
        strict = _strict_options(cfg, row)
        if strict:
            if cfg.isolate:
                row = run_isolated(cfg, spec, path, data, sample, **strict)
            else:
                row = bench_row(cfg, spec, path, data, sample, **strict)
            report.rows.append(row)
            _progress(cfg, f"[{i}/{len(jobs)}] {row.name}: " + (row.error or _row_summary(row, report.metric)))


def _close(report: BenchReport, cfg: BenchConfig) -> None:
    """The machine after the work, the reference first, and :func:`finish`."""
    report.machine["load_average_end"] = load_average()
    report.machine["thermal_end"] = thermal()  # temperature and throttling after the work
    report.rows.sort(key=lambda r: not r.reference)  # the reference first
    finish(report, cfg)


def _progress(cfg: BenchConfig, msg: str) -> None:
    if cfg.progress:
        log.info("bench: %s", msg)


def _strict_options(cfg: BenchConfig, row: BenchRow) -> dict[str, Any]:
    """With ``--strict-precision``: the options that make the row's engine compute in float32, when its default
    did not (OpenVINO on AMX/AVX512-BF16 CPUs); empty otherwise (the default row already is the strict one)."""
    cls = RUNTIMES.get(row.engine or "")
    if not cfg.strict_precision or row.reference or row.status != "ok" or cls is None:
        return {}
    return dict(cls.strict_options) if cls.strict_options and row.precision_used != "fp32" else {}


def _model_of(artifacts: Sequence[str | Path]) -> str | None:
    """The registered model that the first given artifact's metadata names (so --model may be left out)."""
    try:
        first = next(iter(discover_artifacts(artifacts)), None) if artifacts else None
        model = read_metadata(first).get("model") if first else None
    except EdgeposeError:
        return None
    name = model.get("name") if isinstance(model, dict) else None
    return name if name in MODELS else None


def _row_summary(row: BenchRow, metric: str | None) -> str:
    m = row.model or {}
    acc = (row.accuracy or {}).get("metrics", {})
    s = f"p50 {m.get('p50_ms', float('nan')):.2f} ms"
    return s + (f", {metric} {acc[metric]:.4f}" if metric in acc else "")


def _recorded_reference(report: BenchReport) -> tuple[float | None, str | None]:
    """The PyTorch accuracy an artifact's conversion recorded, if it was measured on the very data used here
    (same annotation file bytes, same flip test); a device without torch then still gets deltas."""
    ds = report.config.get("dataset") or {}
    for r in report.artifact_rows:
        rec = r.metadata_reference or {}
        same = (rec.get("ann_sha256") and rec.get("ann_sha256") == ds.get("ann_sha256")
                and rec.get("bbox_file_sha256") == ds.get("bbox_file_sha256")
                and rec.get("flip_test") == report.config.get("flip_test"))  # fmt: skip
        if same and rec.get("metric") == report.metric and rec.get("value") is not None:
            return float(rec["value"]), f"recorded at conversion ({r.name} metadata)"
    return None, None


def finish(report: BenchReport, cfg: BenchConfig) -> None:
    """Accuracy deltas against the PyTorch original, pass/fail, and the flags that need several rows."""
    metric = report.metric
    ref = next((r for r in report.rows if r.reference), None)
    ref_value, ref_from = None, None
    if ref and ref.status == "ok" and metric in (ref.accuracy or {}).get("metrics", {}):
        ref_value, ref_from = ref.accuracy["metrics"][metric], "measured (PyTorch FP32 on this machine)"
    elif metric:
        ref_value, ref_from = _recorded_reference(report)
        if ref_value is None and any(r.accuracy for r in report.rows):
            why = ref.error if ref and ref.error else "no reference row and no matching recorded reference"
            report.notes.append(f"no reference accuracy ({why}); accuracy deltas omitted")
    report.config["reference_accuracy"] = {"value": ref_value, "source": ref_from}
    for r in report.rows:
        acc = r.accuracy
        if not acc or metric not in acc["metrics"]:
            continue
        acc["metric"], acc["value"] = metric, acc["metrics"][metric]
        if ref_value is not None and not r.reference:
            acc["reference"], acc["delta"] = ref_value, acc["value"] - ref_value
            acc["max_drop"] = max_drop_for(r.precision, cfg.max_drop)
            acc["pass"] = bool(-acc["delta"] <= acc["max_drop"] + 1e-12)
            if not acc["pass"]:
                r.flags.append(f"accuracy drop {-acc['delta']:.4f} > {acc['max_drop']:g}")
    ok = [r for r in report.rows if r.status == "ok"]
    for r in ok:
        if r.precision == "fp32" and r.precision_used not in (None, "fp32"):
            r.flags.append(f"FP32 artifact ran in {r.precision_used}")
        over = r.pipeline["no_flip"].get("overhead_pct")
        if over is not None and over > OVERHEAD_TARGET_PCT:
            r.flags.append(f"pre/post {over:.1f}% of inference (target < {OVERHEAD_TARGET_PCT:g}%)")
    for r in ok:
        if r.precision != "int8":
            continue
        for twin in ok:
            if twin is r or twin.reference or twin.engine != r.engine:
                continue
            if twin.precision in ("fp32", "fp16") and twin.model["p50_ms"] < r.model["p50_ms"]:
                r.flags.append(f"INT8 slower than its {twin.precision.upper()} twin "
                               f"({r.model['p50_ms']:.2f} vs {twin.model['p50_ms']:.2f} ms)")  # fmt: skip
