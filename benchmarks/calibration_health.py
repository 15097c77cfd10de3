"""Calibration health check: the measurement behind its thresholds (``benchmarks/results/calibration_health.json``).

    python benchmarks/calibration_health.py [--drops onnx] [--control-size 100] [--threads 2]

For good and poor calibration sets of the demo model, the health figures of
:mod:`edgepose.converters.int8.health` (BatchNorm input statistics vs the running statistics and vs the control
split's) and, with ``--drops TARGETS``, the plain INT8 drop of each set on the control split (the first
``--control-size`` images of the synthetic val split), so that the thresholds can be read off beside what the
sets do to INT8. Sets:

* ``bundled``: the bundled set (synthetic train split, the first 100 crops, what convert uses);
* ``val``: 100 crops of the synthetic val split beyond the control images (in domain, unseen);
* ``samples``: one crop per sample photo (COCO, MPII, hands: 21 real photos; out of the demo model's domain);
* poor variants of ``samples``: ``washed`` (25 % contrast, +190 brightness: the issue's case), ``darkened``
  (50 % brightness), ``colour_cast`` (R x1.0, G x0.55, B x0.25), ``noisy`` (Gaussian noise, sd 60 grey
  levels), ``tiny_crops`` (the central 1/16 of each crop blown up to the input size);
* ``int8_control_hard``: ``benchmarks/int8_control.py``'s hard case (8 crops of the people in the COCO sample
  photos at 50 % brightness), whose plain INT8 drops are recorded in ``results/int8_control.json``;
* the same variants of ``bundled`` (the in-domain images spoiled the same ways).

Each set is saved as it is done; timings are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmpose_samples"
MODEL = "demo_coco_256x192"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def washed(c: np.ndarray) -> np.ndarray:
    return np.clip(c.astype(np.float32) * 0.25 + 190, 0, 255).astype(np.uint8)


def darkened(c: np.ndarray) -> np.ndarray:
    return (c * 0.5).astype(np.uint8)


def colour_cast(c: np.ndarray) -> np.ndarray:
    return np.clip(c.astype(np.float32) * np.array([1.0, 0.55, 0.25], np.float32), 0, 255).astype(np.uint8)


def noisy(c: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(c.astype(np.float32) + rng.normal(0, 60, c.shape), 0, 255).astype(np.uint8)


def tiny_crops(c: np.ndarray) -> np.ndarray:
    import cv2

    h, w = c.shape[1:3]
    return np.stack([cv2.resize(x[h * 3 // 8 : h * 5 // 8, w * 3 // 8 : w * 5 // 8], (w, h),
                                interpolation=cv2.INTER_LINEAR) for x in c])  # fmt: skip


VARIANTS = {"washed": washed, "darkened": darkened, "colour_cast": colour_cast, "noisy": noisy,
            "tiny_crops": tiny_crops}  # fmt: skip


def sample_crops(spec, folder: Path) -> np.ndarray:
    """One crop per sample photo (whole image as the box), through ``edgepose calibrate``'s folder reader."""
    from edgepose.calibration import from_image_folder

    folder.mkdir(exist_ok=True)
    for f in sorted(SAMPLES.glob("*/*")):
        if f.suffix.lower() in (".jpg", ".png"):
            shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
    return from_image_folder(spec, folder, num=64, holdout=0, seed=0).crops


def val_crops(spec, control_size: int, n: int = 100) -> np.ndarray:
    """``n`` instance crops of the synthetic val split beyond the first ``control_size`` images."""
    from edgepose.converters.int8.control import ControlOptions, control_set

    cs = control_set(spec, ControlOptions(size=control_size + 60))
    first = set(cs.images[:control_size])
    rows = [i for i, s in enumerate(cs.ds.samples) if s.image_id not in first]
    return cs.crops[rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drops", default="", help="targets to measure the plain INT8 drop of each set on (comma list)")
    ap.add_argument("--control-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="these sets only (comma list), keeping the others from the results file")
    ap.add_argument("--out", default=str(RESULTS / "calibration_health.json"), help="results file")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import torch

    torch.set_num_threads(args.threads)
    from edgepose.converters.int8.control import ControlOptions, control_set
    from edgepose.converters.int8.health import DOUBTFUL, UNREPRESENTATIVE, assess

    from edgepose.calibration import CalibrationSet, default_calibration_path, read_calibration, write_calibration
    from edgepose.models import load_model
    from edgepose.spec import get_spec

    spec = get_spec(MODEL)
    model = load_model(spec, progress=False)
    control = control_set(spec, ControlOptions(size=args.control_size))
    out = Path(args.out)
    doc = json.loads(out.read_text()) if (args.only and out.is_file()) else {"sets": {}}
    doc.update(model=MODEL, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               thresholds={"doubtful": DOUBTFUL, "unrepresentative": UNREPRESENTATIVE},
               control=f"first {args.control_size} images of the synthetic val split ({len(control.crops)} crops)",
               command="python benchmarks/calibration_health.py " + " ".join(sys.argv[1:]))  # fmt: skip
    bundled = read_calibration(default_calibration_path(spec), spec)
    with tempfile.TemporaryDirectory(prefix="calib-health-") as tmp:
        work = Path(tmp)
        samples = sample_crops(spec, work / "samples")
        sets = {"bundled": bundled.crops[:100], "val": val_crops(spec, args.control_size), "samples": samples}
        for name, f in VARIANTS.items():
            sets[name] = f(samples)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from int8_control import poor_set  # the recorded hard case (its drops: results/int8_control.json)

        sets["int8_control_hard"] = read_calibration(poor_set(work / "hard.npz"), spec).crops
        for name, f in VARIANTS.items():
            sets[f"bundled_{name}"] = f(bundled.crops[:100])
        only = set(args.only.split(",")) if args.only else None
        for name, crops in sets.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            h = assess(model, spec, crops, control.crops)
            row = {**h.summary(), "seconds": round(time.perf_counter() - t0, 1),
                   "layers": {n: round(v, 3) for n, v in h.layers.items()}}  # fmt: skip
            log(f"{name}: {h.verdict} {h.figure:.3f} / control {h.control_figure:.3f}")
            if args.drops:
                path = write_calibration(work / f"{name}.npz", CalibrationSet(crops, bundled.holdout[:16],
                                                                               {"variant": name}))  # fmt: skip
                row["plain_drop"] = plain_drops(path, args.drops, work / f"out_{name}", args)
                log(f"{name}: plain INT8 drops {row['plain_drop']}")
            doc["sets"][name] = row
            save(doc, out)


def plain_drops(calib: Path, targets: str, out: Path, args) -> dict:
    from edgepose.converters.api import convert
    from edgepose.converters.int8.control import ControlOptions

    from edgepose.errors import EdgeposeError

    try:
        res = convert(model=MODEL, targets=targets, precisions="int8", calib=calib, out=out, threads=args.threads,
                      progress=False, control=ControlOptions(size=args.control_size), reference_accuracy=False,
                      allow_parity_failure=True, allow_poor_calib=True)  # fmt: skip
    except EdgeposeError as e:
        return {"error": str(e)}
    return {a.target: round(a.metadata["parity"]["task"]["drop"], 4) for a in res.artifacts}


def save(doc: dict, path: Path) -> None:
    from edgepose.files import atomic_write

    atomic_write(path, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
