"""Time ``edgepose convert`` of one model to every target and precision on this machine.

    python benchmarks/conversion_times.py [--model NAME] [--checkpoint PATH] [--num-calib 100]

Writes ``benchmarks/results/conversion_times.json`` (every step: wall seconds, plus the process CPU seconds of
the whole run) and appends one line to ``benchmarks/results/conversion_times.md``. With ``--onnx2tf-baseline``
it also times onnx2tf's own all-in-one TFLite path (FP32+FP16 in one run, then INT8) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load_avg_1min_before": load}


def onnx2tf_baseline(onnx_path: Path, calib: np.ndarray, work: Path) -> dict:
    """onnx2tf writing TFLite itself: one run for FP32+FP16, one for full INT8 (its own calibration path)."""
    import onnx2tf
    import onnx2tf.onnx2tf as o2t
    from edgepose.converters.targets.tflite.convert import sample_images

    from edgepose.spec import IMAGENET_MEAN, IMAGENET_STD

    o2t.download_test_image_data = lambda: sample_images(calib, IMAGENET_MEAN, IMAGENET_STD)
    npy = work / "calib.npy"
    np.save(npy, calib.transpose(0, 2, 3, 1))
    out = {}
    t = time.perf_counter()
    onnx2tf.convert(str(onnx_path), output_folder_path=str(work / "a"), not_use_onnxsim=True, verbosity="error")
    out["onnx2tf_fp32_fp16_s"] = time.perf_counter() - t
    t = time.perf_counter()
    onnx2tf.convert(str(onnx_path), output_folder_path=str(work / "b"), not_use_onnxsim=True, verbosity="error",
                    output_integer_quantized_tflite=True, custom_input_op_name_np_data_path=[["input", str(npy),
                    [[[[0.0]]]], [[[[1.0]]]]]])  # fmt: skip
    out["onnx2tf_with_int8_s"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--onnx2tf-baseline", action="store_true")
    ap.add_argument("--note", default="", help="free text for the markdown line (e.g. 'machine idle')")
    args = ap.parse_args()
    from edgepose.cli import setup_logging

    setup_logging()  # progress of convert and bench on stderr

    from edgepose.converters.api import convert

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        res = convert(model=args.model, checkpoint=args.checkpoint, targets="all", num_calib=args.num_calib,
                      out=Path(tmp) / "out", progress=True)  # fmt: skip
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        record = {
            "model": res.model,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": info,
            "num_calib": args.num_calib,
            "total_wall_s": round(wall, 1),
            "total_cpu_s": round(cpu, 1),
            "steps_s": {k: round(v, 2) for k, v in res.timings.items()},
            "artifacts": [artifact_record(a) for a in res.artifacts],
            "tflite_saved_model_s": saved_model_seconds(res),
        }
        if args.onnx2tf_baseline:
            record["baseline"] = run_baseline(args, Path(tmp))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "conversion_times.json").write_text(json.dumps(record, indent=2) + "\n")
    line = markdown_line(record, args.note)
    md = RESULTS / "conversion_times.md"
    if not md.exists():
        md.write_text(MD_HEAD)
    with open(md, "a") as f:
        f.write(line + "\n")
    print(line)


MD_HEAD = """# Conversion times (edgepose convert --target all, fp32,fp16,int8)

Written by `python benchmarks/conversion_times.py`; the full record of the last run is `conversion_times.json`.

| when (UTC) | model | machine | total | steps (s) | per artifact (s) | note |
|---|---|---|---|---|---|---|
"""


def artifact_record(a) -> dict:
    return {"file": a.path.name, "convert_s": round(a.seconds, 2), "size_mb": round(a.size_bytes / 1e6, 2),
            "snr_db": a.parity["snr_db"], "rel_max_err": a.parity["rel_max_err"], "kp_within": a.parity["kp_within"],
            "kp_count": a.parity["kp_count"]}  # fmt: skip


def saved_model_seconds(res) -> float | None:
    for a in res.artifacts:
        if a.target == "tflite" and "saved_model_seconds" in a.metadata["conversion"]:
            return a.metadata["conversion"]["saved_model_seconds"]
    return None


def run_baseline(args, tmp: Path) -> dict:
    from edgepose.converters.export import export_onnx

    from edgepose.calibration import default_calibration_path, read_calibration
    from edgepose.models import load_model
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(args.model or DEFAULT_MODEL)
    onnx_path = tmp / "m.onnx"
    export_onnx(load_model(spec, args.checkpoint, progress=False), spec, onnx_path)
    calib = read_calibration(default_calibration_path(spec), spec).calibration_batch(spec, args.num_calib)
    return onnx2tf_baseline(onnx_path, calib, tmp)


def markdown_line(r: dict, note: str) -> str:
    m, st = r["machine"], r["steps_s"]
    per = ", ".join(f"{a['file'].replace(r['model'] + '_', '')} {a['convert_s']:.1f}" for a in r["artifacts"])
    steps = (f"export {st.get('onnx_export', 0):.1f}, onnx {st.get('onnx', 0):.1f}, tflite {st.get('tflite', 0):.1f} "
             f"(SavedModel {r['tflite_saved_model_s']}), openvino {st.get('openvino', 0):.1f}")  # fmt: skip
    load = m["load_avg_1min_before"]
    machine = f"{m['cpu'][:40]} ({m['cores']} cores, load {load:.1f})" if load is not None else m["cpu"][:40]
    base = r.get("baseline")
    extra = f"onnx2tf alone: {json.dumps({k: round(v, 1) for k, v in base.items()})} " if base else ""
    total = f"{r['total_wall_s']:.0f} s wall / {r['total_cpu_s']:.0f} s CPU"
    return f"| {r['created'][:16]} | {r['model']} | {machine} | {total} | {steps} | {per} | {extra}{note} |"


if __name__ == "__main__":
    main()
