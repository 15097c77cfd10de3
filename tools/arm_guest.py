"""Run one ARM-check job on the machine at hand: a list of ``edgepose`` commands, their JSON outputs collected.

``tools/arm_check.py`` copies this file into the emulated 64-bit ARM rootfs and runs it there with the
rootfs's Python (which has nothing but ``edgepose[lite]`` installed), then runs it on the host with the same
job, so that both sides go through the same edgepose code: the CLI's own handlers, called in one process
(importing numpy, OpenCV and LiteRT once saves minutes under emulation). Standard library only at the top.

Usage: ``python arm_guest.py JOB.json OUT_DIR`` -> ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Engines and converter stacks that the `lite` group must not need (and that the ARM venv must not have).
HEAVY = ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "openvino", "nncf", "tflite_runtime", "onnx2tf")
VERSIONS = ("edgepose", "numpy", "opencv-python-headless", "opencv-python", "ai-edge-litert", "pycocotools")


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("model name", "model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    """Where this ran: architecture, Python, library versions, what is installed, which heavy stacks exist."""
    from importlib import metadata

    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": {n: _dist_version(n) for n in VERSIONS},
        "distributions": sorted(
            f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]
        ),
        "heavy_importable": [m for m in HEAVY if importlib.util.find_spec(m) is not None],
    }


def _expand(value: str, base: Path, out: Path) -> str:
    return value.replace("{base}", str(base)).replace("{out}", str(out))


def run_step(step: dict[str, Any], base: Path, out: Path, cli_main) -> dict[str, Any]:
    """One ``edgepose`` command in-process: exit status, wall time, error text, and its JSON outputs."""
    argv = [_expand(a, base, out) for a in step["argv"]]
    for path in step.get("outputs", {}).values():
        Path(_expand(path, base, out)).parent.mkdir(parents=True, exist_ok=True)
    rec: dict[str, Any] = {"id": step["id"], "argv": argv, "rc": None, "error": None, "outputs": {}}
    t0 = time.perf_counter()
    try:
        rec["rc"] = int(cli_main(argv) or 0)
    except SystemExit as e:  # argparse rejects an option
        rec["rc"] = e.code if isinstance(e.code, int) else 2
        rec["error"] = f"exited with {e.code!r} (bad arguments?)"
    except Exception as e:  # keep going: one failing step must not hide the others
        rec["rc"] = 1
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["traceback"] = traceback.format_exc()
    rec["seconds"] = time.perf_counter() - t0
    for name, path in step.get("outputs", {}).items():
        p = Path(_expand(path, base, out))
        if p.is_file():
            try:
                rec["outputs"][name] = json.loads(p.read_text())
            except ValueError as e:
                rec["error"] = rec["error"] or f"{p}: not JSON ({e})"
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", help="job JSON written by tools/arm_check.py")
    ap.add_argument("out_dir", help="where the commands write and results.json goes")
    args = ap.parse_args(argv)
    job_path = Path(args.job).resolve()
    job = json.loads(job_path.read_text())
    base, out = job_path.parent, Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    from edgepose.cli import main as cli_main  # the device-side import, timed

    import_s = time.perf_counter() - t0
    steps = job["steps"]
    results: dict[str, Any] = {"import_seconds": import_s, "steps": []}
    for i, step in enumerate(steps, 1):
        print(f"[{platform.machine()}] step {i}/{len(steps)}: {step['id']}", flush=True)
        rec = run_step(step, base, out, cli_main)
        status = "ok" if rec["rc"] == 0 and not rec["error"] else f"FAILED rc={rec['rc']} {rec['error'] or ''}"
        print(f"[{platform.machine()}] step {i}/{len(steps)}: {status} ({rec['seconds']:.1f} s)", flush=True)
        results["steps"].append(rec)
    results["machine"] = machine_info()
    results["heavy_imported"] = sorted(m for m in HEAVY if m in sys.modules)
    tmp = out / ".results.json.part"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
