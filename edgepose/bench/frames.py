"""``edgepose bench --frames``: what an app gets per frame, per engine pair (detector + pose model on one engine).

For each pose artifact, paired with a detector on the same engine (a detector artifact among the ones given, of
the same precision where there is one; else the PyTorch detector, and the row says so), measured in one process,
interleaved rounds, medians:

* **detector ms**: one detector call on a frame (letterbox, engine, decode, NMS);
* **pose ms for P persons** (``persons``, default 1, 3, 6) of one synthetic frame, through ``TopDownPipeline``
  (crops, both flip-test passes, decoding): all persons in one engine call against one call per person, and
  their ratio. ``calls`` says how many engine calls the batched form really made: an artifact with a fixed
  batch of 1 (TFLite as ``convert`` writes it; ONNX without ``--dynamic-batch``) still goes one person per call,
  an OpenVINO IR with a fixed batch is reshaped to a dynamic batch at load (``reshape_batch``) when it can be;
* **the frame loop** (``PoseTracker`` + ``run_loop``, the annotated video written as ``edgepose run --out``
  writes it) on the 3-person synthetic video (``edgepose synth --video``, its default seed), ``--det-every 1``
  and ``--det-every K``: frames per second, per-frame ms of detect, pose, track, draw and the whole frame, the
  engines' share, keypoint AP over all frames and identity switches against the video's ground truth.

Device side only (numpy, OpenCV, the engines; PyTorch only for a ``.pth`` detector), so ``--remote`` runs it on
the device as it is.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeposeError
from ..spec import DATASETS, ModelSpec, get_spec, spec_for_artifact
from .report import grid, ran_note

__all__ = ["FrameBenchConfig", "bench_frames", "batching", "check_detector", "frames_table", "loop", "pair_detectors",
           "DETECTOR_MODEL"]

DETECTOR_MODEL = "demo_person_detector"


@dataclass
class FrameBenchConfig:
    persons: tuple[int, ...] = (1, 3, 6)
    rounds: int = 5  # interleaved rounds of the batching timings
    frames: int = 40  # frames of the synthetic video
    det_every: int = 5  # the K compared with 1
    det_thr: float = 0.3
    threads: int | None = None
    flip_test: bool = True
    progress: bool = True


def _say(cfg: FrameBenchConfig, msg: str) -> None:
    if cfg.progress:
        import sys

        print(f"[frames] {msg}", file=sys.stderr, flush=True)


def _open(path: Path, threads: int | None, **options: Any):
    from ..runtimes import load_runtime

    return load_runtime(path, threads=threads, **options)


def _task_of(path: Path) -> tuple[str, ModelSpec]:
    """(task, spec) of an artifact, read from its metadata without loading the engine."""
    from ..runtimes.artifact import read_metadata

    meta = read_metadata(path)
    spec = spec_for_artifact(None, meta, path)
    return spec.task, spec


def check_detector(path: Path) -> None:
    """One line naming ``path`` when it is not a person detector artifact edgepose can decode."""
    task, _ = _task_of(path)
    if task != "detection":
        raise EdgeposeError(f"--detector {path}: a {task} model, not a person detector")


def pair_detectors(pose: Sequence[Path], detectors: Sequence[Path]) -> list[tuple[Path, Path | None, str]]:
    """``(pose artifact, detector, why)`` for every pose artifact: the detector artifact of the same engine and
    precision, else of the same engine, else ``None`` (the PyTorch detector), with the reason in words."""
    from ..runtimes import engine_for

    precision = {p: _precision(p) for p in [*pose, *detectors]}  # each metadata file read once
    out = []
    for p in pose:
        engine, prec = engine_for(p), precision[p]
        same = [d for d in detectors if engine_for(d) == engine]
        best = next((d for d in same if precision[d] == prec), same[0] if same else None)
        if best is None:
            why = f"no {engine} detector artifact given: the detector runs in PyTorch"
        elif precision[best] != prec:
            why = f"no {prec} {engine} detector: the {precision[best]} one runs"
        else:
            why = ""
        out.append((p, best, why))
    return out


def _precision(path: Path) -> str:
    from ..runtimes.artifact import read_metadata

    return str(read_metadata(path).get("precision", "fp32"))


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 2)


def batching(rt, spec: ModelSpec, frame: np.ndarray, boxes: np.ndarray, cfg: FrameBenchConfig) -> list[dict]:
    """Pose ms of P persons in one call against P calls of one, interleaved rounds, medians."""
    from ..processing import TopDownPipeline

    pipe = TopDownPipeline(spec, input_kind=rt.input_kind, flip_test=cfg.flip_test)
    bs = rt.batch_size
    rows = []
    for p in cfg.persons:
        b = boxes[:p]
        for _ in range(2):  # both shapes warmed up (a dynamic engine compiles per new shape)
            pipe(rt, frame, b)
            pipe(rt, frame, b[:1])
        together: list[float] = []
        single: list[float] = []
        for _ in range(cfg.rounds):
            t0 = time.perf_counter()
            pipe(rt, frame, b)
            t1 = time.perf_counter()
            for i in range(p):
                pipe(rt, frame, b[i : i + 1])
            together.append(t1 - t0)
            single.append(time.perf_counter() - t1)
        passes = 2 if pipe.flip_test else 1
        calls = passes * (1 if bs is None else -(-p // bs))
        bt, st = _median_ms(together), _median_ms(single)
        rows.append({"persons": p, "batched_ms": bt, "one_by_one_ms": st, "ratio": round(bt / st, 3),
                     "calls": calls, "one_by_one_calls": passes * p})  # fmt: skip
    return rows


def _detector_ms(det_rt, detector, frame: np.ndarray, rounds: int) -> float:
    for _ in range(2):
        detector(det_rt, frame)
    times = []
    for _ in range(max(rounds, 3)):
        t0 = time.perf_counter()
        detector(det_rt, frame)
        times.append(time.perf_counter() - t0)
    return _median_ms(times)


def loop(rt, spec: ModelSpec, det_rt, detector, video: Path, ann: Path, det_every: int,
         cfg: FrameBenchConfig, boxes_for: Callable | None = None) -> dict[str, Any]:  # fmt: skip
    """One pass of the frame loop over the synthetic video, the annotated video written (drawing timed)."""
    from ..app import PoseTracker, VideoSink, open_source, run_loop, score_video

    results: list = []
    kw = {"boxes_for": boxes_for} if boxes_for is not None else {"detector": detector, "detector_infer": det_rt}
    tracker = PoseTracker(spec, rt, det_every=det_every, fps=10.0, flip_test=cfg.flip_test, **kw)
    sink = VideoSink(video.parent / f"annotated_{det_every}.mp4", 10.0)
    s = run_loop(tracker, open_source(str(video)), video=sink, on_frame=results.append, progress=False)
    scored = score_video(json.loads(ann.read_text()), results, DATASETS[spec.dataset].sigmas)
    ms = {k: round(v, 2) for k, v in s.ms.items()}
    return {"det_every": det_every, "fps": round(s.fps, 2), "detections": s.detections, "ms": ms,
            "non_engine_share": round(1 - ms["engine"] / ms["frame"], 3) if ms.get("frame") else None,
            "AP": round(float(scored["AP"]), 4), "id_switches": scored["id_switches"],
            "misses": scored["misses"], "false_positives": scored["false_positives"]}  # fmt: skip


def bench_frames(
    pose: Sequence[str | Path],
    detectors: Sequence[str | Path] = (),
    cfg: FrameBenchConfig | None = None,
    detector_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Rows of the frame bench (see the module docstring) for every pose artifact in ``pose``."""
    from ..detection import PersonDetector
    from ..runtimes.open import batched_options, open_checkpoint
    from ..synthetic import VIDEO_SEED, generate_video, render_video

    cfg = cfg or FrameBenchConfig()
    pose_paths = [Path(p) for p in pose]
    det_paths = [Path(d) for d in detectors]
    for d in det_paths:
        check_detector(d)
    pose_ok = [p for p in pose_paths if _task_of(p)[0] == "pose"]
    if not pose_ok:
        raise EdgeposeError("--frames: no pose artifact among the artifacts")
    if cfg.det_every < 2:
        raise EdgeposeError(f"--det-every {cfg.det_every}: the frame bench compares it with 1; give K >= 2")
    frame, people = next(render_video(11, 1, (480, 320), max(cfg.persons)))
    boxes = np.asarray([p["bbox"] for p in people], np.float32)
    if len(boxes) < max(cfg.persons):
        raise EdgeposeError(f"--persons: the synthetic frame holds {len(boxes)} persons")
    rows: list[dict[str, Any]] = []
    torch_det = None
    with tempfile.TemporaryDirectory(prefix="edgepose-frames-") as tmp:
        ann, video = generate_video(Path(tmp) / "video", cfg.frames, VIDEO_SEED, 3)
        for pose_path, det_path, why in pair_detectors(pose_ok, det_paths):
            _say(cfg, f"{pose_path.name} + {det_path.name if det_path else 'PyTorch detector'}")
            rt = _open(pose_path, cfg.threads, **batched_options(pose_path))
            spec = spec_for_artifact(None, rt.metadata, pose_path)
            if det_path is not None:
                det_rt = _open(det_path, cfg.threads)
                det_spec = spec_for_artifact(None, det_rt.metadata, det_path)
            else:
                if torch_det is None:
                    torch_det = open_checkpoint(get_spec(DETECTOR_MODEL), detector_checkpoint, threads=cfg.threads)
                det_rt, det_spec = torch_det, get_spec(DETECTOR_MODEL)
            detector = PersonDetector(det_spec, score_threshold=cfg.det_thr)
            info = rt.info() if hasattr(rt, "info") else {}
            row: dict[str, Any] = {
                "pose": pose_path.name, "engine": rt.engine, "precision": getattr(rt, "precision", None),
                "precision_used": getattr(rt, "precision_used", None),
                "batch": "dynamic" if rt.batch_size is None else rt.batch_size,
                "batch_reshaped": bool(info.get("batch_reshaped")),
                "detector": det_path.name if det_path else f"{DETECTOR_MODEL}.pth (PyTorch)",
                "detector_engine": det_rt.engine, "note": why,
            }  # fmt: skip
            row["detector_ms"] = _detector_ms(det_rt, detector, frame, cfg.rounds)
            row["batching"] = batching(rt, spec, frame, boxes, cfg)
            row["loop"] = [loop(rt, spec, det_rt, detector, video, ann, k, cfg) for k in (1, cfg.det_every)]
            k1, kk = row["loop"]
            row["fps_ratio"] = round(kk["fps"] / k1["fps"], 3) if k1["fps"] else None
            # the most det-every K can give: the detector's share of the det-every-1 frame removed on K-1 of K frames
            share = k1["ms"].get("detect", 0.0) / k1["ms"]["frame"] if k1["ms"].get("frame") else 0.0
            row["fps_ratio_bound"] = round(1 / (1 - share * (cfg.det_every - 1) / cfg.det_every), 3)
            rows.append(row)
            timed = ", ".join(f"P={b['persons']} {b['batched_ms']}/{b['one_by_one_ms']} ms" for b in row["batching"])
            _say(cfg, f"{pose_path.name}: detector {row['detector_ms']} ms, {timed}, {k1['fps']} -> {kk['fps']} fps")
    return {"config": {"persons": list(cfg.persons), "rounds": cfg.rounds, "frames": cfg.frames,
                       "det_every": cfg.det_every, "det_thr": cfg.det_thr, "threads": cfg.threads,
                       "flip_test": cfg.flip_test, "video": f"edgepose synth --video (seed {VIDEO_SEED}, 3 persons, "
                       f"{cfg.frames} frames, 320x256)"}, "rows": rows}  # fmt: skip


def frames_table(data: dict[str, Any], markdown: bool = False) -> str:
    """The frame bench as text: one line per engine pair and P, then the loop."""
    rows = data.get("rows") or []
    if not rows:
        return "frame bench: no rows"
    k = data["config"]["det_every"]
    head = ["pose artifact", "engine, precision (ran)", "batch", "detector", "det ms"]
    for p in data["config"]["persons"]:
        head += [f"pose P={p} one call", f"P={p} one by one", f"ratio P={p}"]
    head += ["FPS K=1", f"FPS K={k}", "FPS ratio (bound)", "frame ms K=1", "track ms", "draw ms",
             "non-engine share", f"AP K=1 / K={k}", f"id switches K=1 / K={k}"]  # fmt: skip
    lines = []
    for r in rows:
        k1, kk = r["loop"]
        note = ran_note({"precision": r.get("precision"), "precision_used": r.get("precision_used")})
        what = f"{r['engine']} {r.get('precision') or ''}".strip() + (f" ({note})" if note else "")
        cells = [r["pose"], what,
                 f"{r['batch']}{' (reshaped)' if r.get('batch_reshaped') else ''}",
                 f"{r['detector']}{' *' if r.get('note') else ''}", f"{r['detector_ms']:.1f}"]  # fmt: skip
        for b in r["batching"]:
            calls = f" ({b['calls']} calls)" if b["calls"] != (2 if data["config"]["flip_test"] else 1) else ""
            cells += [f"{b['batched_ms']:.1f}{calls}", f"{b['one_by_one_ms']:.1f}", f"{b['ratio']:.2f}"]
        cells += [f"{k1['fps']:.1f}", f"{kk['fps']:.1f}", f"{r['fps_ratio']:.2f} ({r['fps_ratio_bound']:.2f})",
                  f"{k1['ms']['frame']:.1f}", f"{k1['ms'].get('track', 0):.1f}", f"{k1['ms'].get('draw', 0):.1f}",
                  f"{k1['non_engine_share']:.1%}", f"{k1['AP']:.4f} / {kk['AP']:.4f}",
                  f"{k1['id_switches']} / {kk['id_switches']}"]  # fmt: skip
        lines.append(cells)
    notes = [f"* {r['pose']}: {r['note']}" for r in rows if r.get("note")]
    notes.append(f"FPS ratio bound: the detector's share of a det-every-1 frame removed on {k - 1} of {k} frames "
                 "(the most skipping the detector can give); non-engine share: reading, crops, decoding and "
                 "tracking, drawing excluded")  # fmt: skip
    return "\n".join(grid(head, lines, markdown) + ([""] if markdown else []) + notes)
