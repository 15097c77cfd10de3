"""The person detector through the converters: every target and precision, box AP vs PyTorch, parity, size, time.

    python benchmarks/detector_convert.py [--out /tmp/det_all] [--control-size 300] [--num-calib 100]

Runs ``edgepose convert --model demo_person_detector --target all --out OUT`` (FP32, FP16 and INT8 of ONNX,
TFLite and OpenVINO; the control split is the first ``--control-size`` images of the synthetic ``scenes_val``
split, 300 = all of it), then reads every artifact's sidecar: the box AP edgepose scored at conversion on the
control split against PyTorch's (the acceptance: within 0.01), the parity figures (tensor SNR and relative error,
box agreement at IoU >= 0.9 on the parity frames), the size on disk and the conversion's timings. Writes
``benchmarks/results/detector_convert.json`` and ``.md``. Timings come from a loaded 2-core machine where
noted; they are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
MODEL = "demo_person_detector"
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


def full_val(art: Path) -> dict:
    """The artifact's box AP on all 300 scenes_val images, run as edgepose ships it (its default engine options)."""
    from edgepose.detector_eval import score_detector
    from edgepose.runtimes import load_runtime
    from edgepose.spec import get_spec
    from edgepose.synthetic import ensure_scenes

    ann, images = ensure_scenes("scenes_val")
    t0 = time.perf_counter()
    res = score_detector(load_runtime(art), get_spec(MODEL), ann, images)
    return {"full_val_box_AP": round(res["metrics"]["AP"], 4), "full_val_AP50": round(res["metrics"]["AP50"], 4),
            "full_val_images": res["images"], "full_val_seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/det_all")
    ap.add_argument("--control-size", type=int, default=300)
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--max-drop", type=float, help="pass --max-drop to convert (INT8 accuracy control)")
    ap.add_argument("--full-val", action="store_true",
                    help="also score every artifact on all 300 scenes_val images (edgepose's runtime + score_detector)")
    ap.add_argument("--skip-convert", action="store_true", help="read an existing --out folder")
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md from the recorded .json")
    args = ap.parse_args()
    if args.md_only:
        print(write_md(json.loads((RESULTS / "detector_convert.json").read_text())))
        return 0
    out = Path(args.out)
    cmd = [sys.executable, "-m", "edgepose", "convert", "--model", MODEL, "--target", "all", "--control-size",
           str(args.control_size), "--num-calib", str(args.num_calib), "--out", str(out),
           *(["--max-drop", str(args.max_drop)] if args.max_drop is not None else [])]  # fmt: skip
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    if not args.skip_convert:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        sys.stderr.write(r.stderr[-4000:])
        if r.returncode:
            return r.returncode
    wall = time.perf_counter() - t0
    rows = []
    for target, suffix in SUFFIX.items():
        for prec in ("fp32", "fp16", "int8"):
            art = out / f"{MODEL}_{prec}{suffix}"
            meta = json.loads(Path(f"{art}.json").read_text())
            p, t = meta["parity"], meta["parity"]["task"]
            files = [art, *(art.with_suffix(s) for s in meta.get("companions", {}))]
            conv = meta["conversion"]
            rows.append({
                "artifact": art.name, "target": target, "precision": prec,
                "box_AP": round(t["value"], 4), "pytorch_box_AP": round(t["reference"], 4),
                "drop": round(t["drop"], 4), "within_0.01": bool(t["drop"] <= 0.01 + 1e-12),
                "control_images": t["control"]["num_images"],
                "snr_db": p["snr_db"], "rel_max_err": p["rel_max_err"], "box_within_iou0.9": p["box_within"],
                "box_mean_iou": p["box_mean_iou"], "parity_boxes": p["box_count"], "parity_passed": p["passed"],
                "size_bytes": sum(f.stat().st_size for f in files), "seconds": conv.get("seconds"),
                "float_layers": len((meta.get("accuracy_control") or {}).get("float_layers") or []),
                "accuracy_control": (meta.get("accuracy_control") or {}).get("method"),
            })  # fmt: skip
            if args.full_val:
                rows[-1].update(full_val(art))
    any_meta = json.loads(Path(f"{out / (MODEL + '_fp32.onnx')}.json").read_text())
    doc = {
        "command": " ".join(["edgepose", *cmd[3:]]),
        "script": "python benchmarks/detector_convert.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": round(load0, 2)},
        "wall_seconds": round(wall, 1) if not args.skip_convert else None,
        "reference_accuracy": any_meta.get("reference_accuracy"),
        "app_metadata": any_meta.get("app"),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detector_convert.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(write_md(doc))
    return 0


def write_md(doc: dict) -> str:
    rows = doc["rows"]
    md = [f"# {MODEL} through the converters", "", f"`{doc['command']}` (script: `{doc['script']}`), "
          f"{doc['date']}, {doc['machine']['cpus']} CPUs, load {doc['machine']['loadavg_at_start']} at start; "
          f"wall {doc['wall_seconds']} s.", "",
          f"Box AP on the control split (first {rows[0]['control_images']} scenes_val images, checked at conversion), "
          f"PyTorch {rows[0]['pytorch_box_AP']:.4f}; PyTorch on all 300 scenes_val images: "
          f"{(doc['reference_accuracy'] or {}).get('value', float('nan')):.4f}.", "",
          "| artifact | box AP | drop | within 0.01 | float layers | SNR dB | rel max err | boxes IoU>=0.9 | mean IoU "
          "| MB | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        md.append(f"| {r['artifact']} | {r['box_AP']:.4f} | {r['drop']:+.4f} | {'yes' if r['within_0.01'] else 'NO'} "
                  f"| {r['float_layers']} | {r['snr_db']:.1f} | {r['rel_max_err']:.1e} "
                  f"| {r['box_within_iou0.9']:.1%} ({r['parity_boxes']}) | {r['box_mean_iou']:.3f} "
                  f"| {r['size_bytes'] / 1e6:.2f} | {r['seconds']} |")  # fmt: skip
    if all(r["float_layers"] == 0 for r in rows):
        defaults = rows[0]["control_images"] == 300 and "--num-calib 100" in doc["command"]
        md += ["", "No INT8 layer was kept in float: plain INT8 met the 0.01 budget everywhere"
               + (f", so the plain `edgepose convert --model {MODEL} --target all` (a detector's control split: all "
                  "300 scenes_val frames; 100 calibration frames: the defaults) writes these very artifacts."
                  if defaults else ".")]  # fmt: skip
    ref = (doc["reference_accuracy"] or {}).get("value")
    if "full_val_box_AP" in rows[0] and ref is not None:
        md += ["", f"All 300 scenes_val images (each artifact run as edgepose ships it; PyTorch {ref:.4f}):", "",
               "| artifact | box AP | vs PyTorch | AP50 |", "|---|---|---|---|"]
        md += [f"| {r['artifact']} | {r['full_val_box_AP']:.4f} | {r['full_val_box_AP'] - ref:+.4f} | "
               f"{r['full_val_AP50']:.4f} |" for r in rows]
    text = "\n".join(md) + "\n"
    (RESULTS / "detector_convert.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
