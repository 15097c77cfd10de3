"""COCO box AP (AP, AP50, AP75) of the person detector on the synthetic scene val split, with its command.

Runs the PyTorch model (fp32, the checkpoint as loaded: the bundled fp16 weights by default, sha256 checked)
through edgepose's device-side decode (:class:`edgepose.detection.PersonDetector`: letterbox, 3x3 peaks,
top 100, the spec's score threshold, NMS IoU 0.6) and scores with pycocotools' ``COCOeval`` (bbox).

    python benchmarks/detector_ap.py                      # -> benchmarks/results/detector_ap.json
    python benchmarks/detector_ap.py --checkpoint runs/det/best.pth --out /tmp/ap.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edgepose import synthetic
from edgepose.checkpoint import resolve_checkpoint
from edgepose.detector_eval import score_detector
from edgepose.files import atomic_write, sha256_of
from edgepose.models import load_model
from edgepose.spec import get_spec

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo_person_detector")
    p.add_argument("--checkpoint", help="default: the spec's (bundled) checkpoint")
    p.add_argument("--split", default="scenes_val", choices=sorted(synthetic.SCENE_SPLITS))
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detector_ap.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = get_spec(args.model)
    model = load_model(spec, args.checkpoint, progress=False)
    ckpt = resolve_checkpoint(args.checkpoint or spec.checkpoint)
    ann, images = synthetic.ensure_scenes(args.split)

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    res = score_detector(infer, spec, ann, images, args.limit)
    doc = {
        "model": spec.name,
        "command": "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "checkpoint": {"file": str(ckpt.relative_to(ROOT)) if ckpt.is_relative_to(ROOT) else str(ckpt),
                       "sha256": sha256_of(ckpt)},
        "data": {"split": args.split, "annotations_sha256": sha256_of(ann),
                 "seed": synthetic.SCENE_SPLITS[args.split][1], "images": res["images"], "persons": res["persons"]},
        "runtime": "PyTorch fp32 on CPU (torch %s), edgepose.detection.PersonDetector decode" % torch.__version__,
        "decode": {"score_threshold": spec.score_threshold, "top_k": 100, "nms_iou": 0.6},
        "metric": "COCO box AP, pycocotools COCOeval iouType bbox (iscrowd figures ignored)",
        "metrics": res["metrics"],
        "detections": res["detections"],
        "seconds": res["seconds"],
    }  # fmt: skip
    atomic_write(args.out, json.dumps(doc, indent=2) + "\n")
    m = res["metrics"]
    print(f"{spec.name} on {args.split} ({res['images']} images, {res['persons']} persons): "
          f"AP {m['AP']:.4f} AP50 {m['AP50']:.4f} AP75 {m['AP75']:.4f} -> {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
