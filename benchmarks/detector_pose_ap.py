"""The demo pose model's COCO keypoint AP with the person detector's boxes beside its AP with ground-truth boxes
(issue 24, item 5), and the detector's box AP: one ``edgepose eval --detector`` run, recorded with its command.

    python benchmarks/detector_pose_ap.py            # -> benchmarks/results/detector_pose_ap.{json,md}
    python benchmarks/detector_pose_ap.py --detector runs/det/best.pth --threads 2
    python benchmarks/detector_pose_ap.py --artifact DIR/demo_coco_256x192_fp32.onnx   # the pose model's FP32 ONNX

``--artifact`` poses with a converted FP32 artifact of the pose model in place of PyTorch (ten times faster on a
CPU; the FP32 ONNX artifact gives PyTorch's keypoint AP to the fourth digit, with ground-truth and detected
boxes alike, and its conversion checked it against PyTorch); the record names what ran.

It runs, in a child process, exactly::

    edgepose eval --model demo_coco_256x192 --detector DETECTOR --data scenes_val --out TMP.json --threads N

(PyTorch fp32 on CPU for both models; the bundled demo_person_detector.pth by default; the synthetic multi-person
scenes, scenes_val: 300 images, seed 31337), then writes its metrics file with the command, the checkpoints'
sha256, the machine's load, and the done-when check (|AP with GT boxes - AP with detected boxes| <= 0.05).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from edgepose.files import atomic_write, sha256_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGET = 0.05


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo_coco_256x192")
    p.add_argument("--detector", default="edgepose/assets/demo_person_detector.pth")
    p.add_argument("--artifact", help="pose with this converted artifact of --model instead of PyTorch")
    p.add_argument("--data", default="scenes_val")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "detector_pose_ap.json"), help="JSON; the .md goes beside it")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "eval.json"
        pose = ["--artifact", args.artifact] if args.artifact else ["--model", args.model]
        cmd = ["edgepose", "eval", *pose, "--detector", args.detector, "--data", args.data,
               "--out", str(metrics), "--threads", str(args.threads), "--no-progress"]  # fmt: skip
        load0, t0 = os.getloadavg(), time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgepose", *cmd[1:]], cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        doc = json.loads(metrics.read_text())
    kp = doc["keypoints"]
    ap_gt, ap_det = kp["gt_boxes"]["metrics"]["AP"], kp["detected_boxes"]["metrics"]["AP"]
    det_path = ROOT / args.detector if not Path(args.detector).is_absolute() else Path(args.detector)
    record = {
        "what": "demo pose model: COCO keypoint AP with ground-truth boxes vs with the person detector's boxes "
                "(mmpose's detected-box protocol: every box with score >= det_bbox_thr, box score x mean keypoint "
                "score > 0.2, OKS NMS 0.9); the detector's COCO box AP",
        "command": "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "eval_command": " ".join(shlex.quote(c) for c in cmd[:cmd.index("--out") + 1]) + " TMP.json "
                        + " ".join(cmd[cmd.index("--out") + 2:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": platform.processor() or platform.machine(), "load_start": [round(x, 2) for x in load0],
                    "load_end": [round(x, 2) for x in os.getloadavg()], "seconds": round(seconds, 1)},
        "detector": {**doc["detector"], "sha256": sha256_of(det_path) if det_path.is_file() else None},
        "model": doc["model"],
        "pose_ran": (f"{Path(args.artifact).name} (converted artifact, sha256 {sha256_of(args.artifact)[:16]})"
                     if args.artifact else "PyTorch fp32"),
        "data": {"split": args.data, **doc["data"], "annotations_sha256": sha256_of(doc["data"]["ann"])},
        "box": doc["box"],
        "keypoints": {
            "gt_boxes": {"metrics": kp["gt_boxes"]["metrics"], "instances": kp["gt_boxes"]["num_samples"]},
            "detected_boxes": {"metrics": kp["detected_boxes"]["metrics"],
                               "instances": kp["detected_boxes"]["num_samples"]},
            "det_bbox_thr": kp["det_bbox_thr"],
            "flip_test": kp["gt_boxes"]["flip_test"],
        },
        "done_when": {"AP_gt_boxes": ap_gt, "AP_detected_boxes": ap_det, "difference": ap_gt - ap_det,
                      "budget": BUDGET, "within": abs(ap_gt - ap_det) <= BUDGET},
    }  # fmt: skip
    out = Path(args.out)
    atomic_write(out, json.dumps(record, indent=2) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(record))
    print(markdown(record))
    return 0


def markdown(r: dict) -> str:
    b, k, d = r["box"]["metrics"], r["keypoints"], r["done_when"]
    g, t = k["gt_boxes"]["metrics"], k["detected_boxes"]["metrics"]
    lines = [
        "# Pose AP with the detector's boxes (issue 24, item 5)",
        "",
        f"Command: `{r['command']}`  ",
        f"which ran: `{r['eval_command']}`  ",
        f"Date: {r['date']}; machine: {r['machine']['cpu']}, load {r['machine']['load_start']} (start) / "
        f"{r['machine']['load_end']} (end), {r['machine']['seconds']} s  ",
        f"Detector: `{r['detector']['file']}` ({r['detector']['layout']} layout, sha256 "
        f"{(r['detector'].get('sha256') or '')[:16]}, decode threshold {r['detector']['score_threshold']}); "
        f"pose model: {r['model']} ({r.get('pose_ran', 'PyTorch fp32')}, "
        f"flip test {'on' if k['flip_test'] else 'off'})  ",
        f"Data: synthetic {r['data']['split']}, {r['box']['images']} images, {r['box']['persons']} persons "
        f"(annotations sha256 {r['data']['annotations_sha256'][:16]})",
        "",
        "| | AP | AP50 | AP75 | AR | instances |",
        "|---|---|---|---|---|---|",
        f"| detector box AP | {b['AP']:.4f} | {b['AP50']:.4f} | {b['AP75']:.4f} | {b['AR']:.4f} | "
        f"{r['box']['detections']} detections |",
        f"| keypoint AP, ground-truth boxes | {g['AP']:.4f} | {g['AP50']:.4f} | {g['AP75']:.4f} | {g['AR']:.4f} | "
        f"{k['gt_boxes']['instances']} |",
        f"| keypoint AP, detected boxes (score >= {k['det_bbox_thr']:g}) | {t['AP']:.4f} | {t['AP50']:.4f} | "
        f"{t['AP75']:.4f} | {t['AR']:.4f} | {k['detected_boxes']['instances']} |",
        "",
        f"Done-when (|AP GT boxes - AP detected boxes| <= {d['budget']}): difference {d['difference']:+.4f}: "
        f"**{'met' if d['within'] else 'NOT met'}**.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
