"""The app's frame loop, timed and scored side by side in one process (issue 25's ratios).

    python benchmarks/frame_loop.py --artifacts DIR --detector CKPT.pth [--threads 1] [--frames 40] [--rounds 5]

``DIR`` holds the demo pose model's artifacts made with ``edgepose convert --target onnx,openvino --precision
fp32,int8 --dynamic-batch`` (``demo_coco_256x192_{fp32,int8}.{onnx,xml}``); ``CKPT`` is the demo person
detector's PyTorch checkpoint, exported here to ONNX and to OpenVINO IR (FP32, batch 1) so that each engine pair
runs detector and pose model on one engine. Parts, each measured in one run, interleaved rounds, medians:

1. **batching**: pose ms (crops, both flip-test passes, decoding: ``TopDownPipeline``) for P = 1, 3, 6 persons of
   a synthetic frame, all in one engine call against one call per person; the ratio batched / one-by-one.
2. **frame loop**: ``PoseTracker`` + ``run_loop`` on the 3-person synthetic video (``edgepose synth --video``,
   default seed), ``--det-every 1`` against ``--det-every 5``, writing the annotated video as ``edgepose run
   --out`` does: FPS, per-frame ms (detect, pose, track, draw: skeletons drawn and the frame encoded),
   the engines' share, keypoint AP over all frames and identity switches against the video's ground truth;
   with the detector and with ground-truth boxes (``--boxes``: the tracker alone, detector quality aside).

Writes ``benchmarks/results/frame_loop.{json,md}`` with the machine and the load average at start and end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from edgepose.app import read_boxes  # noqa: E402
from edgepose.bench.frames import FrameBenchConfig, loop  # noqa: E402
from edgepose.bench.frames import batching as frames_batching  # noqa: E402
from edgepose.bench.machine import load_average, machine_info  # noqa: E402
from edgepose.detection import PersonDetector  # noqa: E402
from edgepose.runtimes import load_runtime  # noqa: E402
from edgepose.runtimes.open import batched_options  # noqa: E402
from edgepose.spec import DEFAULT_MODEL, get_spec  # noqa: E402
from edgepose.synthetic import VIDEO_SEED, generate_video, render_video  # noqa: E402


def export_detector(ckpt: Path, out: Path) -> dict[str, Path]:
    """The detector checkpoint as ONNX and OpenVINO IR (FP32, batch 1), each with its metadata sidecar."""
    import openvino as ov

    from converters.export import export_onnx
    from converters.metadata import write_sidecar
    from edgepose.models import load_model

    spec = get_spec("demo_person_detector")
    model = load_model(spec, str(ckpt), progress=False)
    meta = {"model": spec.to_dict(), "precision": "fp32", "batch": 1, "layout": {"input": "NCHW", "output": "NCHW"}}
    onnx_path = export_onnx(model.float().eval(), spec, out / "demo_person_detector_fp32.onnx")
    write_sidecar(onnx_path, {**meta, "format": "onnx"})
    xml = out / "ov" / "demo_person_detector_fp32.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    write_sidecar(xml, {**meta, "format": "openvino"})
    return {"onnxruntime": onnx_path, "openvino": xml}


def batching(pose: dict[str, Path], threads: int, rounds: int) -> list[dict]:
    """``edgepose.bench.frames.batching`` for each pose artifact (OpenVINO IRs with a fixed batch reshaped at load)."""
    spec = get_spec(DEFAULT_MODEL)
    frame, people = next(render_video(11, 1, (480, 320), 6))
    boxes = np.asarray([p["bbox"] for p in people], np.float32)
    cfg = FrameBenchConfig(rounds=rounds, threads=threads, progress=False)
    rows = []
    for name, path in pose.items():
        rt = load_runtime(path, threads=threads, **batched_options(path))
        for r in frames_batching(rt, spec, frame, boxes, cfg):
            rows.append({"artifact": name, "engine": rt.engine, **r})
            print(f"batching {name} P={r['persons']}: {r['batched_ms']:.1f} ms vs {r['one_by_one_ms']:.1f} ms -> "
                  f"{r['ratio']:.2f} ({r['calls']} calls vs {r['one_by_one_calls']})", flush=True)  # fmt: skip
    return rows


def frame_loop(pose: dict[str, Path], detectors: dict[str, Path], video: Path, ann: Path, threads: int,
               rounds: int) -> list[dict]:  # fmt: skip
    """``edgepose.bench.frames.loop`` at det-every 1 and 5, with the detector and with ground-truth boxes."""
    spec = get_spec(DEFAULT_MODEL)
    cfg = FrameBenchConfig(threads=threads, progress=False)
    rows = []
    for name, path in pose.items():
        rt = load_runtime(path, threads=threads, **batched_options(path))
        det_rt = load_runtime(detectors[rt.engine], threads=threads)
        detector = PersonDetector(get_spec("demo_person_detector"), score_threshold=0.3)
        for boxes in (False, True):
            per: dict[int, list[dict]] = {1: [], 5: []}
            for _ in range(rounds):
                for k in (1, 5):
                    per[k].append(loop(rt, spec, det_rt, detector, video, ann, k, cfg,
                                       boxes_for=read_boxes(ann) if boxes else None))  # fmt: skip
            for k in (1, 5):
                runs = per[k]
                ms = {key: round(statistics.median(r["ms"][key] for r in runs), 2) for key in runs[0]["ms"]}
                how = "ground truth" if boxes else "detector"
                r = {**runs[-1], "artifact": name, "engine": rt.engine, "boxes": how,
                     "fps": round(statistics.median(x["fps"] for x in runs), 2), "ms": ms,
                     "non_engine_share": round(1 - ms["engine"] / ms["frame"], 3)}  # fmt: skip
                rows.append(r)
                print(f"loop {name} {r['boxes']} K={k}: {r['fps']} fps, AP {r['AP']}, IDSW {r['id_switches']}, "
                      f"non-engine {r['non_engine_share']:.1%} {ms}", flush=True)  # fmt: skip
    return rows


def markdown(doc: dict) -> str:
    out = ["# Frame loop (issue 25)", "", f"Command: `{doc['command']}`  ",
           f"Machine: {doc['machine'].get('cpu', '?')}, threads {doc['threads']}, load average "
           f"{doc['load_start']} (start) / {doc['load_end']} (end)  ",
           f"Detector: {doc['detector']}", "", "## Pose: all persons in one call vs one call each (ms, medians)", "",
           "| artifact | P | batched | one by one | ratio |", "|---|---|---|---|---|"]  # fmt: skip
    for r in doc["batching"]:
        out.append(f"| {r['artifact']} | {r['persons']} | {r['batched_ms']} | {r['one_by_one_ms']} | {r['ratio']} |")
    out += ["", "## Frame loop on the 3-person synthetic video", "",
            "| artifact | boxes | det every | FPS | detector runs | detect ms | pose ms | track ms | draw ms "
            "| frame ms | engines ms | non-engine share | AP | id switches | misses | false pos. |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in doc["loop"]:
        m = r["ms"]
        out.append(f"| {r['artifact']} | {r['boxes']} | {r['det_every']} | {r['fps']} | {r['detections']} | "
                   f"{m['detect']} | {m['pose']} | {m['track']} | {m['draw']} | {m['frame']} | {m['engine']} | "
                   f"{r['non_engine_share']:.1%} | {r['AP']} | {r['id_switches']} | {r['misses']} | "
                   f"{r['false_positives']} |")  # fmt: skip
    out += ["", "## Ratios", ""]
    for line in doc["ratios"]:
        out.append(f"- {line}")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", required=True, type=Path)
    ap.add_argument("--detector", required=True, type=Path, help="demo_person_detector PyTorch checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5, help="batching rounds")
    ap.add_argument("--loop-rounds", type=int, default=1, help="frame-loop rounds")
    ap.add_argument("--skip-batching", action="store_true")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--suffix", default="", help="results file name suffix (frame_loop<suffix>.json)")
    args = ap.parse_args()
    load_start = load_average()
    pose = {}
    for prec in ("fp32", "int8"):
        for suffix in (".onnx", ".xml"):
            p = args.artifacts / f"{DEFAULT_MODEL}_{prec}{suffix}"
            if p.is_file():
                pose[f"{'ONNX' if suffix == '.onnx' else 'OpenVINO'} {prec.upper()}"] = p
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        detectors = export_detector(args.detector, tmp)
        ann, video = generate_video(tmp / "video", args.frames, VIDEO_SEED, 3)
        batch_rows = [] if args.skip_batching else batching(pose, args.threads, args.rounds)
        loop_rows = [] if args.skip_loop else frame_loop(pose, detectors, video, ann, args.threads, args.loop_rounds)
    ratios = []
    for r in batch_rows:
        if r["persons"] == 3:
            ratios.append(f"{r['artifact']}: 3 persons batched / 3 single calls = {r['ratio']} (target <= 0.75)")
    for name in pose if loop_rows else ():
        for boxes in ("detector", "ground truth"):
            k1 = next(r for r in loop_rows if r["artifact"] == name and r["boxes"] == boxes and r["det_every"] == 1)
            k5 = next(r for r in loop_rows if r["artifact"] == name and r["boxes"] == boxes and r["det_every"] == 5)
            ratios.append(f"{name}, {boxes} boxes: FPS det-every 5 / det-every 1 = {k5['fps'] / k1['fps']:.2f} "
                          f"(target >= 2), AP {k5['AP']} vs {k1['AP']} (diff {k5['AP'] - k1['AP']:+.4f}, target "
                          f"within 0.01), id switches {k5['id_switches']} vs {k1['id_switches']}, non-engine share "
                          f"{k1['non_engine_share']:.1%} / {k5['non_engine_share']:.1%} (target <= 10 % for INT8; "
                          "drawing excluded)")
    doc = {
        "command": " ".join(["python", "benchmarks/frame_loop.py", *sys.argv[1:]]),
        "machine": machine_info(args.threads), "threads": args.threads, "load_start": load_start,
        "load_end": load_average(),
        "detector": f"{args.detector.name} sha256 {hashlib.sha256(args.detector.read_bytes()).hexdigest()[:16]} "
                    "(FP32, exported to each engine here)",
        "batching": batch_rows, "loop": loop_rows, "ratios": ratios,
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"frame_loop{args.suffix}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (RESULTS / f"frame_loop{args.suffix}.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
