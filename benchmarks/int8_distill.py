"""Distilled calibration data vs the bundled set: plain INT8 drops on the control split, every target.

    python benchmarks/int8_distill.py [--targets onnx,tflite,openvino] [--control-size 100] [--threads 2]
                                      [--skip-washed]

Four calibration sets for the demo model, each converted plain (no ``--max-drop``) to INT8 for every target and
scored on the control split (the first ``--control-size`` images of the synthetic val split):

* ``bundled``: the bundled set (synthetic train split; ``convert``'s default, 100 crops used);
* ``distill``: ``convert --calib distill`` (32 crops distilled from the BatchNorm statistics, seed 0, no image);
* ``washed``: the issue's poor set: the MPII and hand sample photos washed out (25 % contrast, +190 brightness),
  ``edgepose calibrate --images washed/ --num 16 --holdout 4`` (converted with ``--allow-poor-calib``: the
  health check refuses it);
* ``washed+distill``: the washed crops followed by the 32 distilled crops (48 crops, all used).

Writes ``results/int8_distill.json`` and ``.md``, each row as soon as it is done. Timings are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmpose_samples"
MODEL = "demo_coco_256x192"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def washed_set(work: Path) -> Path:
    """``edgepose calibrate --images washed/ --num 16 --holdout 4`` on the washed-out MPII and hand photos."""
    from edgepose.calibration import from_image_folder, write_calibration
    from edgepose.spec import get_spec

    d = work / "washed"
    d.mkdir()
    for k in ("mpii", "onehand10k", "panoptic", "rhd"):
        for f in sorted(SAMPLES.glob(f"{k}/*.[jp][pn]g")):
            img = cv2.imread(str(f))
            washed = np.clip(img.astype(np.float32) * 0.25 + 190, 0, 255).astype(np.uint8)
            cv2.imwrite(str(d / f"{k}_{f.stem}.png"), washed)
    cset = from_image_folder(get_spec(MODEL), d, num=16, holdout=4, seed=0)
    return write_calibration(work / "washed.npz", cset)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="onnx,tflite,openvino")
    ap.add_argument("--control-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-washed", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgepose.converters.api import convert
    from edgepose.converters.int8.control import ControlOptions
    from edgepose.converters.int8.distill import cached_distilled_set

    from edgepose.calibration import CalibrationSet, read_calibration, write_calibration
    from edgepose.checkpoint import resolve_checkpoint, sha256_of
    from edgepose.errors import EdgeposeError
    from edgepose.spec import get_spec

    spec = get_spec(MODEL)
    doc = {"model": MODEL, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/int8_distill.py " + " ".join(sys.argv[1:]),
           "control": f"first {args.control_size} images of the synthetic val split", "load_start":
           round(os.getloadavg()[0], 2), "rows": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="int8-distill-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        dist = cached_distilled_set(spec, None, sha256_of(resolve_checkpoint(spec.checkpoint, progress=False)))
        doc["distill_seconds"] = round(time.perf_counter() - t0, 1)  # 0 when cached
        cases = {"bundled": (None, {}), "distill": ("distill", {})}
        if not args.skip_washed:
            w = washed_set(work)
            wc = read_calibration(w, spec)
            both = CalibrationSet(np.concatenate([wc.crops, dist.crops]), wc.holdout, {**wc.meta, "variant":
                                  "washed + distilled"})  # fmt: skip
            both_path = write_calibration(work / "washed_distill.npz", both)
            cases["washed"] = (w, {"allow_poor_calib": True})
            cases["washed+distill"] = (both_path, {"allow_poor_calib": True})
        for name, (calib, kw) in cases.items():
            log(f"{name}: converting {args.targets}")
            t0 = time.perf_counter()
            try:
                res = convert(model=MODEL, targets=args.targets, precisions="int8", calib=calib,
                              out=work / f"out_{name.replace('+', '_')}", threads=args.threads, progress=False,
                              control=ControlOptions(size=args.control_size), reference_accuracy=False,
                              allow_parity_failure=True, **kw)  # fmt: skip
                row = {"drops": {a.target: round(a.metadata["parity"]["task"]["drop"], 4) for a in res.artifacts},
                       "health": res.artifacts[0].metadata["calibration"]["health"],
                       "crops": res.artifacts[0].metadata["calibration"]["num"]}  # fmt: skip
            except EdgeposeError as e:
                row = {"error": str(e)}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            log(f"{name}: {row.get('drops') or row.get('error')}")
            doc["rows"][name] = row
            save(doc)
    doc["load_end"] = round(os.getloadavg()[0], 2)
    save(doc)


def markdown(doc: dict) -> str:
    targets = sorted({t for r in doc["rows"].values() for t in r.get("drops", {})})
    out = [f"# Distilled calibration data ({doc['model']})", "",
           f"{doc['date']}; control split: {doc['control']}; `{doc['command']}`. Plain INT8 (no `--max-drop`); "
           "drop = AP of PyTorch FP32 minus AP of the artifact on the control split (positive = worse).", "",
           "| calibration set | crops | health (figure, verdict) | " + " | ".join(targets) + " |",
           "|---|---:|---|" + "---:|" * len(targets)]  # fmt: skip
    for name, r in doc["rows"].items():
        if "error" in r:
            out.append(f"| {name} | | | {r['error']} |")
            continue
        h = r["health"]
        verdict = h["verdict"] + (" (distilled: reported, not refused)" if name == "distill" else "")
        out.append(f"| {name} | {r['crops']} | {h['figure']:.3f}, {verdict} | "
                   + " | ".join(f"{r['drops'].get(t, float('nan')):+.4f}" for t in targets) + " |")  # fmt: skip
    return "\n".join(out) + "\n"


def save(doc: dict) -> None:
    from edgepose.files import atomic_write

    atomic_write(RESULTS / "int8_distill.json", json.dumps(doc, indent=1) + "\n")
    atomic_write(RESULTS / "int8_distill.md", markdown(doc))


if __name__ == "__main__":
    main()
