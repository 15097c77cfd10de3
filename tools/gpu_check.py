#!/usr/bin/env python
"""Build, check and time the desktop GPU path in one call, on a machine with an NVIDIA GPU.

    python tools/gpu_check.py                      # demo model, batch sizes 1,8,32,128,256
    python tools/gpu_check.py --model coco_256x192 --checkpoint path/to/mmpose.pth
    python tools/gpu_check.py --dry-run            # anywhere: CPU fallback, tiny runs (checks the script only)

Steps: (1) environment report (GPU model, driver, CUDA, cuDNN, torch, onnxruntime, TensorRT, OpenVINO);
(2) build: a dynamic-batch ONNX export of the checkpoint; (3) parity against PyTorch FP32 on CPU for one batch
of crops: CUDA FP32 (TF32 off) within 1e-4 of the peak, FP16/BF16 within their tolerances, decoded keypoints of
clear joints agreeing; (4) bench rows for batch 1 and large batches (latency per batch, crops/s, pre/post share),
plus the device-only latency of the PyTorch model (input already on the GPU, CUDA events); (5) writes
benchmarks/results/gpu_<gpu>_<date>.json and .md. Exit status 1 when a parity check fails, 2 when there is no
GPU (without --dry-run). Numbers are written only for what ran; a fallback is reported as such.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgepose.bench.batch import batch_sweep  # noqa: E402
from edgepose.errors import EdgeposeError  # noqa: E402
from edgepose.processing import TopDownPipeline, get_max_preds, quarter_offset  # noqa: E402
from edgepose.runtimes import devices, load_runtime  # noqa: E402
from edgepose.spec import DEFAULT_MODEL, get_spec  # noqa: E402

# (name, relative tolerance on heatmaps against the highest CPU FP32 peak, keypoint tolerance in heatmap px)
TOLERANCE = {"fp32": (1e-4, 0.0), "fp16": (1e-2, 1.0), "bf16": (1e-1, 1.0)}
REFERENCE_POINTS = [
    "mmpose MobileNetV2 256x192: 91.8 FPS, PyTorch, GTX 1660 Super (mmpose model zoo speed table)",
    "RTMPose-t: 0.98 ms, TensorRT FP16, RTX 3090 (RTMPose paper)",
    "target on an H100: batch-1 latency < 1 ms in FP16; >= 20,000 crops/s at a large batch; 3.13 GFLOP per crop",
]


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu": platform.processor() or platform.machine()}  # fmt: skip
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)  # fmt: skip
        env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        env["nvidia_smi"] = f"unavailable ({e})"
    import torch

    env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cudnn=torch.backends.cudnn.version(),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))))  # fmt: skip
    try:
        import onnxruntime as ort

        env.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except ImportError:
        env["onnxruntime"] = None
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError:
        env["tensorrt"] = None
    env["openvino_devices"] = devices.openvino_devices()
    return env


# -------------------------------------------------------------------------------------------- inputs
def scene(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth synthetic 640x480 image and ``n`` person-shaped boxes over it (deterministic)."""
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(16):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 80)
        img += rng.uniform(40, 200, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    img = np.clip(img + 0.2 * xx[..., None], 0, 255).astype(np.uint8)
    bw = rng.uniform(60, 250, n)
    bh = bw * rng.uniform(1.5, 3.0, n)
    boxes = np.stack([rng.uniform(0, w - 60, n), rng.uniform(0, h - 100, n), bw, bh], axis=1).astype(np.float32)
    return img, boxes


def decode_hm(hm: np.ndarray) -> np.ndarray:
    c, _ = get_max_preds(hm)
    return quarter_offset(hm, c)


# -------------------------------------------------------------------------------------------- parity
def parity(name: str, precision: str, ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    tol, kp_tol = TOLERANCE[precision]
    peak = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max() / peak)
    clear = ref.max(axis=(2, 3)) > 0.5 * peak
    kp = float(np.abs(decode_hm(ref) - decode_hm(out))[clear].max()) if clear.any() else 0.0
    ok = err <= tol and kp <= kp_tol + 1e-6
    say(f"  parity {name:<34} max|diff|/peak {err:.2e} (tol {tol:g})  keypoints {kp:.3f} hm px "
        f"(tol {kp_tol:g}, {int(clear.sum())} clear joints)  {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return {"name": name, "precision": precision, "rel_err": err, "tol": tol, "keypoint_err_px": kp,
            "keypoint_tol_px": kp_tol, "clear_joints": int(clear.sum()), "pass": ok}  # fmt: skip


def device_only_ms(rt: Any, batch: int, runs: int, warmup: int) -> float | None:
    """PyTorch model latency with the input already on the GPU (CUDA events): no copies, no numpy."""
    import torch

    if not getattr(rt, "on_cuda", False):
        return None
    w, h = rt.spec.input_size
    x = torch.randn(batch, 3, h, w, device=rt.dev)
    with torch.inference_mode():
        for _ in range(warmup):
            rt._forward(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            rt._forward(x)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    return float(np.median(times))


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--checkpoint", help="checkpoint (default: the model's own; the demo model's ships)")
    ap.add_argument("--batch-sizes", default="1,8,32,128,256")
    ap.add_argument("--runs", type=int, default=200, help="timed calls at batch 1 (fewer at larger batches)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where gpu_*.json/md go")
    ap.add_argument("--dry-run", action="store_true", help="no GPU needed: CPU fallback, tiny runs, results to "
                    "a temp folder unless --out is given")  # fmt: skip
    args = ap.parse_args(argv)
    sizes = tuple(int(v) for v in args.batch_sizes.split(","))
    if args.dry_run:
        sizes, args.runs, args.warmup = tuple(s for s in sizes if s <= 8) or (1,), 3, 1
        if "--out" not in (argv or sys.argv):
            args.out = tempfile.mkdtemp(prefix="gpu_check_")
    import torch

    torch.backends.cudnn.benchmark = True
    say("== environment")
    env = environment()
    for k, v in env.items():
        say(f"  {k}: {v}")
    if not env["cuda_available"] and not args.dry_run:
        say(f"gpu_check: no CUDA device ({devices.cuda_report()}); --dry-run checks the script on CPU")
        return 2
    dev = "cuda" if env["cuda_available"] else "cuda"  # dry run: asked for, falls back (and says so)
    spec = get_spec(args.model)
    from edgepose.checkpoint import resolve_checkpoint

    source = args.checkpoint or spec.checkpoint
    ckpt = resolve_checkpoint(source, progress=False)
    results: dict[str, Any] = {"schema": "edgepose.gpu_check/1", "date": dt.datetime.now(dt.timezone.utc).isoformat(),
                               "model": spec.name, "environment": env, "dry_run": args.dry_run,
                               "reference_points_not_measured_here": REFERENCE_POINTS, "parity": [],
                               "rows": []}  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_build_"))

    say("== build: dynamic-batch ONNX")
    from edgepose.converters.export import export_onnx
    from edgepose.converters.metadata import write_sidecar

    from edgepose.models import load_model

    cpu_model = load_model(spec, source, progress=False)
    onnx_path = export_onnx(cpu_model, spec, tmp / f"{spec.name}_fp32.onnx", dynamic_batch=True)
    write_sidecar(onnx_path, {"model": spec.to_dict(), "precision": "fp32", "format": "onnx", "batch": None,
                              "layout": {"input": "NCHW", "output": "NCHW"}})  # fmt: skip
    say(f"  {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")

    say("== parity against PyTorch FP32 on CPU")
    image, boxes = scene(32)
    pipe = TopDownPipeline(spec, flip_test=False)
    crops = pipe.preprocess(image, *pipe.boxes_to_center_scale(boxes))
    torch.backends.cudnn.allow_tf32 = False  # parity in true FP32; TF32 is a speed option, timed below
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = load_runtime(ckpt, engine="torch", model=spec.name, source=source)(crops)
    fb = args.dry_run
    configs: list[tuple[str, str, str, dict[str, Any]]] = [
        ("torch cuda fp32", "fp32", "torch", {}),
        ("torch cuda fp32 channels_last", "fp32", "torch", {"channels_last": True}),
        ("torch cuda fp16", "fp16", "torch", {"precision": "fp16"}),
        ("torch cuda fp16 channels_last graphs", "fp16", "torch",
         {"precision": "fp16", "channels_last": True, "cuda_graphs": True}),
        ("torch cuda bf16", "bf16", "torch", {"precision": "bf16"}),
        ("onnxruntime cuda fp32", "fp32", "onnxruntime", {}),
    ]
    if "TensorrtExecutionProvider" in (env.get("ort_providers") or []):
        trt = [("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": True,
                                              "trt_engine_cache_enable": True,
                                              "trt_engine_cache_path": str(tmp / "trt")}),
               ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]  # fmt: skip
        configs.append(("onnxruntime tensorrt fp16", "fp16", "onnxruntime", {"providers": trt, "device": "tensorrt"}))
    runtimes: dict[str, Any] = {}
    failed = False
    for name, prec, engine, opts in configs:
        opts = dict(opts)
        device = opts.pop("device", dev)
        path = ckpt if engine == "torch" else onnx_path
        extra = {"model": spec.name, "source": source} if engine == "torch" else {}
        try:
            rt = load_runtime(path, engine=engine, device=device, allow_fallback=fb, **extra, **opts)
            out = rt(crops)
        except (EdgeposeError, RuntimeError) as e:
            say(f"  {name}: FAILED to run: {str(e).splitlines()[0]}")
            results["parity"].append({"name": name, "error": str(e).splitlines()[0], "pass": False})
            failed = True
            continue
        info = rt.info()
        p = parity(name, prec, ref, out)
        p.update(device=info.get("device"), fallback=info.get("fallback"), device_name=info.get("device_name"))
        if info.get("fallback"):
            say(f"    FALLBACK: ran on {info['device']}: {info['fallback']}")
        results["parity"].append(p)
        failed |= not p["pass"]
        runtimes[name] = rt

    say("== bench (latency per batch; crops/s; pre/post share)")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    for name, rt in runtimes.items():
        info = rt.info()
        rows = batch_sweep(spec, rt, image, boxes[:1], sizes, args.runs, args.warmup)
        for r in rows:
            r.update(config=name, engine=info["engine"], device=info.get("device"), fallback=info.get("fallback"),
                     device_name=info.get("device_name"), precision=info.get("precision_used", "fp32"),
                     device_only_ms=device_only_ms(rt, r["batch"], max(5, args.runs // r["batch"]), 3))  # fmt: skip
            d = f"  device-only {r['device_only_ms']:.3f} ms" if r["device_only_ms"] is not None else ""
            say(f"  {name:<36} {str(r['device']):<7} batch {r['batch']:>4}: {r['latency_p50_ms']:9.3f} ms  "
                f"{r['crops_per_s']:10.1f} crops/s  pipeline {r['pipeline_crops_per_s']:9.1f}/s  "
                f"pre/post {r['pre_post_share_pct']:.0f}%{d}" + ("  FALLBACK" if r["fallback"] else ""))  # fmt: skip
        results["rows"].extend(rows)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", str(env.get("gpu") or "cpu-dryrun").lower()).strip("-")
    stem = out_dir / f"gpu_{slug}_{results['date'][:10]}"
    for suffix, text in ((".json", json.dumps(results, indent=1, default=str)), (".md", markdown(results))):
        part = stem.with_suffix(suffix + ".part")
        part.write_text(text + "\n")
        part.replace(stem.with_suffix(suffix))
    say(f"== wrote {stem}.json and {stem}.md")
    say("== parity: " + ("FAILED" if failed else "all passed"))
    return 1 if failed else 0


def markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    lines = [f"# GPU check: {res['model']} on {env.get('gpu') or 'no GPU (dry run, CPU fallback)'}", "",
             f"Date {res['date'][:19]}Z; torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, cuDNN "
             f"{env.get('cudnn')}); onnxruntime {env.get('onnxruntime')}; TensorRT {env.get('tensorrt')}; "
             f"nvidia-smi: {env.get('nvidia_smi')}", ""]  # fmt: skip
    if res["dry_run"]:
        lines += ["**Dry run: nothing here ran on a GPU.**", ""]
    lines += ["## Parity against PyTorch FP32 on CPU", "", "| config | device | max err / peak | tol | keypoints px | "
              "pass |", "|---|---|---|---|---|---|"]  # fmt: skip
    for p in res["parity"]:
        if "error" in p:
            lines.append(f"| {p['name']} | - | - | - | - | FAILED: {p['error']} |")
        else:
            lines.append(f"| {p['name']} | {p['device']}{' (fallback)' if p['fallback'] else ''} | "
                         f"{p['rel_err']:.2e} | {p['tol']:g} | {p['keypoint_err_px']:.3f} | "
                         f"{'yes' if p['pass'] else 'NO'} |")  # fmt: skip
    lines += ["", "## Batched inference", "", "Latency per batch (runtime call, host copies included); device-only: "
              "PyTorch forward with the input already on the GPU (CUDA events).", "",
              "| config | device | batch | p50 ms | crops/s | pipeline crops/s | pre ms | decode ms | pre/post | "
              "device-only ms |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["rows"]:
        dev = f"{r['device']}{' (fallback)' if r['fallback'] else ''}"
        do = f"{r['device_only_ms']:.3f}" if r["device_only_ms"] is not None else "-"
        lines.append(f"| {r['config']} | {dev} | {r['batch']} | {r['latency_p50_ms']:.3f} | {r['crops_per_s']:.1f} | "
                     f"{r['pipeline_crops_per_s']:.1f} | {r['pre_ms']:.2f} | {r['decode_ms']:.2f} | "
                     f"{r['pre_post_share_pct']:.0f}% | {do} |")  # fmt: skip
    lines += ["", "Reference points (not measured by this script):", ""] + [f"- {p}" for p in REFERENCE_POINTS]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
