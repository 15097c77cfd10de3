"""``edgepose bench`` for a person detector (a model whose spec's task is ``detection``): its rows.

One row per artifact and one for the PyTorch FP32 original, each in this process, one after the other: load
time, the model alone on one letterboxed frame (p50 / p90 / p99 over ``runs`` calls after ``warmup``), the whole
detection (letterbox, engine, decode, NMS: what an app calls per frame), the COCO box AP on the synthetic
``scenes_val`` split (``--limit`` first images) through :class:`edgepose.detection.PersonDetector`, its drop
against the PyTorch original with the budget convert checks (0.01 box AP at every precision, ``--max-drop``), file
size, and the precision the engine computed in. The det + pose pair per engine is ``bench --frames``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..detection import BOX_AP_BUDGET
from ..errors import EdgeposeError
from ..spec import ModelSpec, spec_for_artifact
from .config import BenchConfig
from .data import artifact_size, discover_artifacts, guess_precision, one_line
from .machine import load_average, machine_info, usable_cpus
from .report import grid, ran_note
from .timing import summarize, time_calls

__all__ = ["bench_detector", "detector_markdown", "detector_table"]


def _row(cfg: BenchConfig, spec: ModelSpec, path: Path | None, ann: Path, images: Path, frame) -> dict[str, Any]:
    from ..detection import PersonDetector
    from ..detector_eval import score_detector
    from ..runtimes import load_runtime
    from ..runtimes.open import open_checkpoint

    name = path.name if path is not None else f"{spec.name} (PyTorch FP32)"
    row: dict[str, Any] = {"name": name, "path": str(path) if path else None, "reference": path is None,
                           "status": "ok", "error": None}  # fmt: skip
    try:
        t0 = time.perf_counter()
        if path is None:
            rt = open_checkpoint(spec, cfg.reference or None, threads=cfg.threads)
            row_spec = spec
        else:
            rt = load_runtime(path, threads=cfg.threads)
            row_spec = spec_for_artifact(None, rt.metadata, path)
            if row_spec.task != "detection":
                raise EdgeposeError(f"{path}: a {row_spec.task} model among the detector's artifacts")
        row["load_s"] = round(time.perf_counter() - t0, 3)
        det = PersonDetector(row_spec)
        x, _ = det.preprocess(frame, getattr(rt, "input_kind", None))
        row.update(engine=rt.engine, precision=getattr(rt, "precision", "fp32") if path else "fp32",
                   precision_used=getattr(rt, "precision_used", None),
                   size_bytes=artifact_size(path) if path else None)  # fmt: skip
        if path is not None and not row["precision"]:
            row["precision"] = guess_precision(path)
        row["model"] = summarize(time_calls(lambda: rt(x), cfg.runs, cfg.warmup))
        row["detect"] = summarize(time_calls(lambda: det(rt, frame), cfg.runs, cfg.warmup))
        if cfg.accuracy:
            s = score_detector(rt, row_spec, ann, images, limit=cfg.limit)
            row["accuracy"] = {"metric": "box_AP", "metrics": s["metrics"], "value": s["metrics"]["AP"],
                               "images": s["images"], "persons": s["persons"], "detections": s["detections"]}
    except (EdgeposeError, RuntimeError, ValueError, OSError) as e:  # one row fails, the bench goes on
        row.update(status="failed", error=one_line(e))
    return row


def bench_detector(cfg: BenchConfig, spec: ModelSpec) -> dict[str, Any]:
    """Rows for every detector artifact found in ``cfg.artifacts`` (default ``artifacts/<model>/``) and the
    PyTorch original (unless ``cfg.reference == ""``), then the box-AP drops against it."""
    from .. import synthetic
    from ..images import read_image

    if cfg.runs < 1 or cfg.warmup < 0:
        raise EdgeposeError("--runs must be at least 1 and --warmup at least 0")
    cfg.threads = cfg.threads or usable_cpus()
    dirs = list(cfg.artifacts) or [Path("artifacts") / spec.name]
    paths = discover_artifacts(dirs)
    if not paths:
        raise EdgeposeError(f"{', '.join(map(str, dirs))}: no artifacts found; make them with: edgepose convert "
                            f"--model {spec.name}")  # fmt: skip
    if cfg.ann or cfg.images or cfg.bbox_file or cfg.dataset:
        raise EdgeposeError(f"{spec.name}: a detector is benched on the synthetic scenes_val split; --ann, "
                            "--images, --dataset and --bbox-file are for pose models")  # fmt: skip
    ann, images = synthetic.ensure_scenes("scenes_val")
    ann, images = Path(ann), Path(images)
    import json

    first = sorted(json.loads(ann.read_text())["images"], key=lambda i: i["id"])[0]
    frame = read_image(images / first["file_name"])
    load_start = load_average()
    rows = [_row(cfg, spec, p, ann, images, frame) for p in paths]
    if cfg.reference != "":
        rows.insert(0, _row(cfg, spec, None, ann, images, frame))
    ref = next((r for r in rows if r["reference"] and r["status"] == "ok" and r.get("accuracy")), None)
    for r in rows:
        if r["reference"] or not r.get("accuracy") or ref is None:
            continue
        acc = r["accuracy"]
        acc["reference"], acc["delta"] = ref["accuracy"]["value"], acc["value"] - ref["accuracy"]["value"]
        acc["max_drop"] = BOX_AP_BUDGET if cfg.max_drop is None else cfg.max_drop  # every precision's, as convert
        acc["pass"] = bool(-acc["delta"] <= acc["max_drop"] + 1e-12)
    machine = machine_info(cfg.threads)
    machine["load_average_start"], machine["load_average_end"] = load_start, load_average()
    return {"schema": "edgepose.bench.detector/1", "model": spec.name, "metric": "box_AP", "machine": machine,
            "config": {"runs": cfg.runs, "warmup": cfg.warmup, "threads": cfg.threads, "limit": cfg.limit,
                       "data": f"scenes_val ({ann})", "frame": first["file_name"]},
            "notes": [], "rows": rows}  # fmt: skip


def detector_table(data: dict[str, Any], markdown: bool = False) -> str:
    head = ["artifact", "engine", "precision (ran)", "size MB", "load s", "model p50 ms", "p90", "detect p50 ms",
            "box AP", "AP50", "Δ box AP", "budget"]  # fmt: skip
    cells = []
    for r in data["rows"]:
        if r["status"] != "ok":
            cells.append([r["name"], "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", f"failed: {r['error']}"])
            continue
        acc = r.get("accuracy") or {}
        m = acc.get("metrics") or {}
        note = ran_note(r)
        prec = r["precision"] + (f" ({note})" if note else "")
        delta = f"{acc['delta']:+.4f}" if "delta" in acc else "-"
        budget = (("pass" if acc["pass"] else "FAIL") + f" (<= {acc['max_drop']:g})") if "pass" in acc else "-"
        cells.append([r["name"], r["engine"], prec, f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") else "-",
                      f"{r['load_s']:.2f}", f"{r['model']['p50_ms']:.2f}", f"{r['model']['p90_ms']:.2f}",
                      f"{r['detect']['p50_ms']:.2f}", f"{m['AP']:.4f}" if m else "-",
                      f"{m['AP50']:.4f}" if m else "-", delta, budget])  # fmt: skip
    return "\n".join(grid(head, cells, markdown))


def detector_markdown(data: dict[str, Any]) -> str:
    """The table with the machine, the load before and after, and the settings it was measured with."""
    m, c = data["machine"], data["config"]
    limit = f" (first {c['limit']} images)" if c.get("limit") else ""
    head = (f"{m.get('cpu', '?')} ({m.get('arch', '?')}), {c['threads']} thread(s), {m.get('date', '')}; 1-minute "
            f"load {m.get('load_average_start')} (start) / {m.get('load_average_end')} (end); model alone and whole "
            f"detection over {c['runs']} calls after {c['warmup']} warm-up on {c['frame']}; box AP on "
            f"{c['data']}{limit}.")  # fmt: skip
    return f"# {data['model']}: detector bench\n\n{head}\n\n{detector_table(data, markdown=True)}\n"
