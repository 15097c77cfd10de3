#!/usr/bin/env python3
"""The Raspberry Pi path, checked here: TFLite artifacts run on 64-bit ARM Linux and agree with x86.
(Over 400 lines: one end-to-end check, its steps and the x86/ARM comparison table in the order they run.)

One command (run as root on an x86-64 Debian/Ubuntu host):

    python tools/arm_check.py [--artifacts DIR] [--rootfs DIR] [--out report.json]

1. installs ``qemu-user-static`` and ``debootstrap`` with apt-get when missing;
2. builds (once, cached under ``~/.cache/edgepose/arm-rootfs`` with a version stamp) a Debian bookworm arm64
   userland: ``debootstrap --foreign`` downloads and unpacks it, the remaining packages (Python 3.11, pip) are
   unpacked with the host's ``dpkg-deb`` (no binfmt_misc here, so no second stage runs), and a venv is made
   with the emulated Python;
3. downloads aarch64 wheels of ``edgepose[lite]``'s dependencies on the host (clean pip settings), builds an
   edgepose wheel from this checkout, and installs both offline inside (``pip install --no-index``): the
   venv then holds nothing but numpy, OpenCV, ai-edge-litert and pycocotools (and their own dependencies);
4. runs ``edgepose predict`` (sample COCO images and synthetic val images), ``edgepose eval`` and
   ``edgepose bench`` on each artifact under ``qemu-aarch64-static`` in a chroot, and the same job on this
   x86 host with the same code (``tools/arm_guest.py``);
5. compares the keypoints (max abs difference in pixels per artifact), prints a table and writes a JSON report.

Exit status: 0 all artifacts agree, 1 some disagree or a step failed, 2 bad input, 77 the check cannot run
here (not root, no apt/Debian mirror/PyPI reachable). Timings under emulation are not ARM speed.

Longer than edgepose's ~400-line rule on purpose: one standalone root script whose steps read top to bottom;
the rootfs building lives in tools/arm_rootfs.py and the guest side in tools/arm_guest.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from arm_rootfs import (
    CACHE,
    CPUS,
    DEBIAN_MIRROR,
    GUEST_VENV,
    GUEST_WORK,
    REPO,
    ROOTFS_VERSION,
    SUITE,
    CheckError,
    Unavailable,
    build_edgepose_wheel,
    chroot_cmd,
    ensure_host_tools,
    ensure_rootfs,
    ensure_wheels,
    file_lock,
    guest_env,
    install_in_rootfs,
    log,
    run,
    sha256_file,
    write_cpu_files,
)

SAMPLES = REPO.parent / "shared" / "data" / "mmpose_samples"
DEMO_MODEL = "demo_coco_256x192"

# Largest accepted keypoint difference between x86 and ARM, in image pixels (scores: absolute). A trial gave
# bit-identical INT8 (XNNPACK on both sides) and FP32 within 1e-5 px.
TOL_PX = {"fp32": 1e-3, "fp16": 1e-2, "int8": 1e-3}
TOL_SCORE = 1e-4
TOL_METRIC = 1e-4
SKIP = 77
EMULATION_NOTE = (
    "ARM timings come from qemu user-mode emulation (roughly 100-500x slower than a real board): they are NOT "
    "ARM speed. Run `edgepose bench` on the device for speed."
)


# --------------------------------------------------------------------------------------------- artifacts
def sidecars(path: Path) -> list[Path]:
    """The artifact's JSON sidecar(s): ``model.tflite.json`` (edgepose.artifact), or ``model.json``."""
    return [p for p in (path.with_name(path.name + ".json"), path.with_suffix(".json")) if p.is_file()]


def precision_of(path: Path) -> str:
    """The artifact's precision from its JSON sidecar, else from its file name."""
    for side in sidecars(path):
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(side.read_text())
            p = meta.get("precision") or (meta.get("artifact") or {}).get("precision")
            if isinstance(p, str):
                return p.lower()
    m = re.search(r"(fp32|fp16|int8)", path.stem.lower())
    return m.group(1) if m else "fp32"


def find_artifacts(arg: str | None) -> list[Path]:
    """``--artifacts`` (a directory of .tflite files, or one file); default: the demo model's FP32 and INT8."""
    if arg:
        p = Path(arg)
        files = sorted(p.glob("*.tflite")) if p.is_dir() else [p]
        if not files or not all(f.is_file() and f.suffix == ".tflite" for f in files):
            raise CheckError(f"{arg}: no .tflite artifacts there")
        return files
    for d in (REPO / "artifacts" / DEMO_MODEL,):
        files = [d / f"{DEMO_MODEL}_{p}.tflite" for p in ("fp32", "int8")]
        if all(f.is_file() for f in files):
            log(f"using the demo artifacts in {d}")
            return files
    return convert_demo()


def convert_demo() -> list[Path]:
    """Convert the demo checkpoint to TFLite FP32 + INT8 once (cached by the checkpoint's sha256)."""
    ckpt = REPO / "edgepose" / "assets" / f"{DEMO_MODEL}.pth"
    if not ckpt.is_file():
        raise CheckError(f"no --artifacts given and the demo checkpoint {ckpt} is missing")
    out = CACHE / "arm-check" / f"artifacts-{sha256_file(ckpt)[:16]}"
    files = [out / f"{DEMO_MODEL}_{p}.tflite" for p in ("fp32", "int8")]
    if all(f.is_file() for f in files):
        log(f"reusing the converted demo artifacts in {out}")
        return files
    tmp = out.parent / f".{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"converting {DEMO_MODEL} to TFLite fp32,int8 on the host (once; cached in {out}) ...")
    run([sys.executable, "-m", "edgepose", "convert", "--model", DEMO_MODEL, "--target", "tflite",
         "--precision", "fp32,int8", "--out", str(tmp)], "edgepose convert", env=host_env(), timeout=3600,
        stream_prefix="  convert| ")  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return files


def host_env() -> dict[str, str]:
    """The host run uses this checkout's edgepose, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


# --------------------------------------------------------------------------------------------------- job
def cli_options() -> dict[str, set[str]]:
    """Each ``edgepose`` command and its option strings (so the job only uses what this checkout has)."""
    sys.path.insert(0, str(REPO))
    from edgepose.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(p._option_string_actions) for name, p in subs.choices.items()}


def coco_sample_images(limit: int) -> list[tuple[Path, list[list[float]]]]:
    """The mmpose COCO sample images with (up to two of) their ground-truth person boxes."""
    ann = SAMPLES / "coco" / "test_coco.json"
    if not ann.is_file():
        log(f"no COCO samples at {ann.parent}: predicting on synthetic images only")
        return []
    doc = json.loads(ann.read_text())
    out = []
    for img in doc["images"][:limit]:
        boxes = [a["bbox"] for a in doc["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd")]
        boxes = sorted(boxes, key=lambda b: -b[2] * b[3])[:2]
        path = ann.parent / img["file_name"]
        if path.is_file():
            out.append((path, boxes))
    return out


def synthetic_subset(dest: Path, n_eval: int, n_predict: int) -> list[tuple[Path, list[list[float]]]]:
    """The first ``n_eval`` synthetic val images as a COCO set of their own in ``dest`` (annotations.json,
    images/), and the first ``n_predict`` images with (up to two of) their boxes."""
    sys.path.insert(0, str(REPO))
    from edgepose.synthetic import ensure_split

    ann, images = ensure_split("val")
    doc = json.loads(ann.read_text())
    keep = doc["images"][: max(n_eval, n_predict)]
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for i in keep:
        shutil.copy2(images / i["file_name"], dest / "images" / i["file_name"])
    boxes = {i["id"]: [a["bbox"] for a in doc["annotations"] if a["image_id"] == i["id"]] for i in keep}
    ids = {i["id"] for i in keep[:n_eval]}
    doc["images"] = keep[:n_eval]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
    (dest / "annotations.json").write_text(json.dumps(doc))
    return [(dest / "images" / i["file_name"], boxes[i["id"]][:2]) for i in keep[:n_predict]]


def build_job(work: Path, artifacts: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """Copy artifacts and images into ``work`` (inside the rootfs) and list the edgepose commands to run."""
    opts = cli_options()
    (work / "artifacts").mkdir(parents=True)
    names = []
    for a in artifacts:
        for f in (a, *sidecars(a)):
            shutil.copy2(f, work / "artifacts" / f.name)
        names.append(a.name)
    synth = synthetic_subset(work / "data" / "synthetic_val", args.eval_images, args.images)
    samples = []
    for src, boxes in coco_sample_images(args.coco_images) + synth:
        dst = work / "images" / src.name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy2(src, dst)
        samples.append((dst.name, boxes))
    threads = ["--threads", str(args.threads)]
    steps: list[dict[str, Any]] = []
    for name, path in zip(names, artifacts):
        art = f"{{base}}/artifacts/{name}"
        for img, boxes in samples:
            stem = f"{{out}}/predict/{name}/{img}"
            argv = ["predict", f"{{base}}/images/{img}", "--artifact", art, "--out", f"{stem}.png",
                    "--json", f"{stem}.json", *threads]  # fmt: skip
            for b in boxes:
                argv.append("--bbox=" + ",".join(f"{v:g}" for v in b))  # "=": a box may start with "-"
            steps.append({"id": f"predict {name} {img}", "kind": "predict", "artifact": name, "argv": argv,
                          "outputs": {"prediction": f"{stem}.json"}})  # fmt: skip
        if "eval" in opts and args.eval_images > 0 and args.eval in ("all", precision_of(path)):
            o = opts["eval"]
            argv = ["eval", "--artifact", art, "--out", f"{{out}}/eval/{name}.json"]
            rel_ann, rel_img = "{base}/data/synthetic_val/annotations.json", "{base}/data/synthetic_val/images"
            argv += ["--ann", rel_ann] if "--ann" in o else []
            argv += ["--images", rel_img] if "--images" in o else []
            argv += ["--limit", str(args.eval_images)] if "--limit" in o else []
            argv += threads if "--threads" in o else []
            argv += ["--quiet"] if "--quiet" in o else ["--no-progress"] if "--no-progress" in o else []
            steps.append({"id": f"eval {name}", "kind": "eval", "artifact": name, "argv": argv,
                          "outputs": {"metrics": f"{{out}}/eval/{name}.json"}})  # fmt: skip
    bench = [n for n, a in zip(names, artifacts) if args.bench == "all" or precision_of(a) == args.bench]
    if "bench" in opts and bench:
        argv = ["bench", "--artifacts", *[f"{{base}}/artifacts/{n}" for n in bench], "--no-reference",
                "--no-accuracy", "--runs", str(args.bench_runs), "--warmup", "0", *threads,
                "--json", "{out}/bench.json", "--quiet"]  # fmt: skip
        steps.append({"id": "bench", "kind": "bench", "artifact": None, "argv": argv,
                      "outputs": {"bench": "{out}/bench.json"}})  # fmt: skip
    job = {"artifacts": names, "precisions": {n: precision_of(a) for n, a in zip(names, artifacts)},
           "steps": steps, "commands": sorted(opts)}  # fmt: skip
    shutil.copy2(REPO / "tools" / "arm_guest.py", work / "arm_guest.py")
    (work / "job.json").write_text(json.dumps(job, indent=1))
    return job


# ----------------------------------------------------------------------------------------------- compare
def _persons(rec: dict[str, Any]) -> list[list[list[float]]]:
    pred = rec.get("outputs", {}).get("prediction") or {}
    return [p["keypoints"] for p in pred.get("persons", [])]


def _failed(rec: dict[str, Any] | None) -> str | None:
    if rec is None:
        return "did not run"
    if rec["rc"] != 0 or rec.get("error"):
        return f"rc={rec['rc']} {rec.get('error') or ''}".strip()
    return None


def compare(job: dict[str, Any], host: dict[str, Any], arm: dict[str, Any]) -> list[dict[str, Any]]:
    """Per artifact: max |x,y| and |score| difference over every keypoint, eval metric differences, pass/fail."""
    hs = {s["id"]: s for s in host["steps"]}
    gs = {s["id"]: s for s in arm["steps"]}
    rows = []
    for name in job["artifacts"]:
        prec = job["precisions"][name]
        row: dict[str, Any] = {"artifact": name, "precision": prec, "tolerance_px": TOL_PX.get(prec, 1e-2),
                               "images": 0, "keypoints": 0, "max_abs_diff_px": 0.0, "max_abs_diff_score": 0.0,
                               "identical": True, "metrics": {}, "errors": []}  # fmt: skip
        for step in job["steps"]:
            if step["artifact"] != name:
                continue
            h, g = hs.get(step["id"]), gs.get(step["id"])
            for side, rec in (("x86", h), ("arm", g)):
                if _failed(rec):
                    row["errors"].append(f"{step['id']} on {side}: {_failed(rec)}")
            if _failed(h) or _failed(g):
                continue
            if step["kind"] == "predict":
                hk, gk = _persons(h), _persons(g)
                if len(hk) != len(gk) or any(len(a) != len(b) for a, b in zip(hk, gk)):
                    row["errors"].append(f"{step['id']}: different numbers of persons/keypoints")
                    continue
                row["images"] += 1
                for hp, gp in zip(hk, gk):
                    for (hx, hy, hsc), (gx, gy, gsc) in zip(hp, gp):
                        row["keypoints"] += 1
                        row["max_abs_diff_px"] = max(row["max_abs_diff_px"], abs(hx - gx), abs(hy - gy))
                        row["max_abs_diff_score"] = max(row["max_abs_diff_score"], abs(hsc - gsc))
                        row["identical"] &= (hx, hy, hsc) == (gx, gy, gsc)
            elif step["kind"] == "eval":
                hm = (h["outputs"].get("metrics") or {}).get("metrics") or {}
                gm = (g["outputs"].get("metrics") or {}).get("metrics") or {}
                for k in sorted(set(hm) & set(gm)):
                    if isinstance(hm[k], (int, float)) and isinstance(gm[k], (int, float)):
                        row["metrics"][k] = {"x86": hm[k], "arm": gm[k], "abs_diff": abs(hm[k] - gm[k])}
                if not row["metrics"]:
                    row["errors"].append(f"{step['id']}: no metrics to compare")
        if row["keypoints"] == 0:
            row["errors"].append("no keypoints compared")
        row["pass"] = (
            not row["errors"]
            and row["max_abs_diff_px"] <= row["tolerance_px"]
            and row["max_abs_diff_score"] <= TOL_SCORE
            and all(m["abs_diff"] <= TOL_METRIC for m in row["metrics"].values())
        )
        rows.append(row)
    return rows


def xnnpack_used(log_text: str) -> bool:
    return "XNNPACK delegate" in log_text


def lite_only(arm: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Did predict, eval and bench run in the venv that holds only the lite group (no heavy stack)?"""
    m = arm["machine"]
    ran = {}
    for kind in ("predict", "eval", "bench"):
        recs = [s for s in arm["steps"] if s["id"].split()[0] == kind]
        ran[kind] = None if not recs else all(_failed(s) is None for s in recs)
    return {
        "heavy_importable": m["heavy_importable"],
        "heavy_imported": arm.get("heavy_imported", []),
        "commands_ok": ran,
        "distributions": m["distributions"],
        "pass": not m["heavy_importable"] and all(v is not False for v in ran.values()),
    }


def step_seconds(res: dict[str, Any]) -> dict[str, float]:
    return {s["id"]: round(s["seconds"], 3) for s in res["steps"]}


def print_table(rows: list[dict[str, Any]], lite: dict[str, Any], xnn: dict[str, bool]) -> None:
    w = max([len(r["artifact"]) for r in rows] + [8])
    print(f"\nx86-64 (host) vs aarch64 (qemu user-mode, {SUITE}): keypoints from `edgepose predict`\n")
    print(f"{'artifact':<{w}}  {'prec':<5} {'images':>6} {'kpts':>5} {'max|dxy| px':>12} {'max|dscore|':>11} "
          f"{'tol px':>7}  {'eval (x86 / arm)':<24} result")  # fmt: skip
    for r in rows:
        metric = next(iter(r["metrics"]), None)
        ev = f"{metric} {r['metrics'][metric]['x86']:.4f} / {r['metrics'][metric]['arm']:.4f}" if metric else "-"
        verdict = ("PASS" + (" (bit-identical)" if r["identical"] else "")) if r["pass"] else "FAIL"
        print(f"{r['artifact']:<{w}}  {r['precision']:<5} {r['images']:>6} {r['keypoints']:>5} "
              f"{r['max_abs_diff_px']:>12.3g} {r['max_abs_diff_score']:>11.3g} {r['tolerance_px']:>7.0e}  "
              f"{ev:<24} {verdict}")  # fmt: skip
        for e in r["errors"]:
            print(f"    ! {e}")
    ok = lite["commands_ok"]
    print(f"\nlite group alone on aarch64: predict={ok['predict']} eval={ok['eval']} bench={ok['bench']}; "
          f"heavy stacks importable there: {lite['heavy_importable'] or 'none'}")  # fmt: skip
    print(f"XNNPACK delegate: x86={xnn['x86']} arm={xnn['arm']}")
    print(f"note: {EMULATION_NOTE}\n")


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Exit 0: agreement; 1: "
                                 "disagreement or a failed step; 2: bad input; 77: cannot run here.")  # fmt: skip
    ap.add_argument("--artifacts", help="directory of .tflite artifacts (with their .json sidecars), or one "
                    "file; default: artifacts/demo_coco_256x192/, else the demo model converted once into the cache")
    ap.add_argument("--rootfs", type=Path, default=CACHE / "arm-rootfs", help="the cached arm64 userland")
    ap.add_argument("--out", type=Path, default=CACHE / "arm-check" / "report.json", help="JSON report path")
    ap.add_argument("--versions", choices=["host", "latest"], default="host",
                    help="host (default): the ARM venv gets the host's numpy/OpenCV/LiteRT/pycocotools versions, "
                    "so that only the architecture differs; latest: what `pip install edgepose[lite]` gets today "
                    "(OpenCV 5 rounds warpAffine differently from 4.x, which moves some keypoints)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the rootfs even if cached")
    ap.add_argument("--refresh-wheels", action="store_true", help="download the aarch64 wheels again")
    ap.add_argument("--mirror", default=DEBIAN_MIRROR, help="Debian mirror for debootstrap")
    ap.add_argument("--cpu", choices=sorted(CPUS), default="cortex-a76",
                    help="CPU model qemu emulates: cortex-a76 (Raspberry Pi 5) or cortex-a72 (Pi 4)")  # fmt: skip
    # FP32 costs ~10 s per inference under emulation (INT8 ~1 s): the defaults keep a run near 5 minutes.
    ap.add_argument("--coco-images", type=int, default=2, help="mmpose COCO sample images to predict on (default 2)")
    ap.add_argument("--images", type=int, default=2, help="synthetic val images to predict on (default 2)")
    ap.add_argument("--eval-images", type=int, default=2, help="synthetic val images for `edgepose eval` (0: none)")
    ap.add_argument("--eval", default="all", choices=["int8", "fp32", "fp16", "all"],
                    help="which artifacts `edgepose eval` runs on (default all; FP32 costs minutes per image under "
                    "emulation)")  # fmt: skip
    ap.add_argument("--bench", default="int8", choices=["int8", "fp32", "fp16", "all", "none"],
                    help="which artifacts `edgepose bench` runs on (default int8: it proves the command; "
                    "emulated timings mean nothing)")  # fmt: skip
    ap.add_argument("--bench-runs", type=int, default=2, help="timed runs per bench measurement (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="inference threads, the same on both sides")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for the emulated run")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    try:
        return check(args)
    except Unavailable as e:
        print(f"arm-check: SKIP: {e}", file=sys.stderr)
        return SKIP
    except CheckError as e:
        print(f"arm-check: error: {e}", file=sys.stderr)
        return 2


def check(args: argparse.Namespace) -> int:
    ensure_host_tools()
    if not importlib_available("ai_edge_litert"):
        raise CheckError("the host Python needs edgepose's lite group (ai-edge-litert) for the x86 side")
    rootfs: Path = args.rootfs.resolve()
    artifacts = find_artifacts(args.artifacts)
    log(f"artifacts: {', '.join(str(a) for a in artifacts)}")
    with file_lock(rootfs.parent / f".{rootfs.name}.lock"):
        log("step 1/5: the arm64 rootfs")
        ensure_rootfs(rootfs, args.mirror, args.rebuild)
        write_cpu_files(rootfs, args.cpu)
        log("step 2/5: aarch64 wheels and the edgepose wheel")
        wheel_dir, reqs = ensure_wheels(args.refresh_wheels, args.versions)
        edgepose_whl = build_edgepose_wheel(CACHE / "arm-check" / "dist")
        log("step 3/5: installing edgepose[lite] in the rootfs (offline)")
        pip_check = install_in_rootfs(rootfs, args.cpu, wheel_dir, edgepose_whl, reqs)
        work = rootfs / GUEST_WORK.lstrip("/")
        shutil.rmtree(work, ignore_errors=True)
        job = build_job(work, artifacts, args)
        n = len(job["steps"])
        log(f"step 4/5: the job on x86-64 (host): {n} edgepose commands")
        host_log = run([sys.executable, str(work / "arm_guest.py"), str(work / "job.json"), str(work / "host")],
                       "the x86 run", env=host_env(), stream_prefix="  x86| ")  # fmt: skip
        log(f"step 5/5: the same job on aarch64 under qemu-aarch64-static -cpu {args.cpu} (slow: emulated)")
        arm_log = run(chroot_cmd(rootfs, args.cpu, f"{GUEST_VENV}/bin/python", f"{GUEST_WORK}/arm_guest.py",
                                 f"{GUEST_WORK}/job.json", f"{GUEST_WORK}/arm"),
                      "the aarch64 run", env=guest_env(), timeout=args.timeout, stream_prefix="  arm| ")  # fmt: skip
        # the work folder is reused by the next run: keep both sides' outputs beside the report
        kept = args.out.parent / f"{args.out.stem}_outputs"
        shutil.rmtree(kept, ignore_errors=True)
        for side, src in (("x86", work / "host"), ("arm", work / "arm")):
            shutil.copytree(src, kept / side)
        host = json.loads((kept / "x86" / "results.json").read_text())
        arm = json.loads((kept / "arm" / "results.json").read_text())
    rows = compare(job, host, arm)
    lite = lite_only(arm, job)
    xnn = {"x86": xnnpack_used(host_log), "arm": xnnpack_used(arm_log)}
    ok = all(r["pass"] for r in rows) and lite["pass"]
    qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout
    report = {
        "schema": "edgepose.arm_check/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pass": ok,
        "artifacts": rows,
        "lite_only": lite,
        "xnnpack": xnn,
        "host": host["machine"],
        "arm": {**arm["machine"], "emulator": qemu.splitlines()[0] if qemu else None, "cpu": args.cpu,
                "rootfs": str(rootfs), "rootfs_version": ROOTFS_VERSION, "pip_check": pip_check,
                "requirements": reqs},  # fmt: skip
        "tolerances": {"px": TOL_PX, "score": TOL_SCORE, "metric": TOL_METRIC},
        "timings_s": {"note": EMULATION_NOTE, "x86": step_seconds(host), "arm_emulated": step_seconds(arm),
                      "import_x86": host["import_seconds"], "import_arm_emulated": arm["import_seconds"]},  # fmt: skip
        "outputs": {"x86": str(kept / "x86"), "arm": str(kept / "arm")},
        "notes": [
            "Not run on a real Raspberry Pi: aarch64 Debian bookworm userland under qemu user-mode emulation.",
            "onnxruntime (not in the lite group) crashes on import under qemu 7.2 unless /proc/cpuinfo looks like an "
            "ARM CPU; the chroot's /proc/cpuinfo is a static ARM one, which XNNPACK also needs.",
        ],
    }
    hv, av = host["machine"]["versions"], arm["machine"]["versions"]
    hv["opencv-python-headless"] = hv.get("opencv-python-headless") or hv.get("opencv-python")
    differ = {k: [hv.get(k), av.get(k)] for k in ("numpy", "opencv-python-headless", "ai-edge-litert", "pycocotools")
              if hv.get(k) != av.get(k)}  # fmt: skip
    report["versions"] = {"mode": args.versions, "x86": hv, "arm": av, "differ": differ}
    if differ:
        report["notes"].append("library versions differ between the sides (x86, arm): " + json.dumps(differ)
                               + "; differences may come from them, not from the architecture")  # fmt: skip
    print_table(rows, lite, xnn)
    print(f"library versions ({args.versions}): " + ("identical on both sides" if not differ else
          "DIFFER " + ", ".join(f"{k} x86 {a} / arm {b}" for k, (a, b) in differ.items())))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.part")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"report: {args.out}  ->  {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def importlib_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
