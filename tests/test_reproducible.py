"""Converting twice gives byte-identical artifacts (issue 14): the session's conversion against a second one in
a fresh process, with the same inputs. The embedded metadata holds no date and no timing (the sidecar does),
and no converter names anything from a process-wide counter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONTROL_IMAGES, start_job  # the same inputs: the INT8 task check's result is embedded

VOLATILE = ("created",)  # sidecar fields that may differ; conversion timings are handled below


def _sidecar_facts(path) -> dict:
    meta = json.loads(path.read_text())
    for k in VOLATILE:
        meta.pop(k, None)
    meta["conversion"] = {k: v for k, v in meta["conversion"].items() if "seconds" not in k}
    return meta


@pytest.mark.slow
@pytest.mark.background("reconvert")
def test_converting_twice_gives_identical_files(demo_conversion, demo_checkpoint, tmp_path):
    """The second conversion is a background job of the session (tests/background.py), started with the session
    and run beside the other tests; alone (no shipped checkpoint), it runs here."""
    first = demo_conversion.out_dir
    job = start_job("reconvert")
    if job is not None:
        r = job.result(timeout=1500)
        again = Path(r.args[r.args.index("--out") + 1])
    else:
        again = tmp_path / "again"
        cmd = [sys.executable, "-m", "edgepose", "convert", "--target", "all", "--precision", "fp32,fp16,int8",
               "--num-calib", "32", "--control-size", str(CONTROL_IMAGES), "--checkpoint", str(demo_checkpoint),
               "--out", str(again), "--quiet"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in first.iterdir() if not p.name.startswith("."))
    assert files == sorted(p.name for p in again.iterdir()) and len(files) >= 20
    differ = [n for n in files if not n.endswith(".json") and (first / n).read_bytes() != (again / n).read_bytes()]
    assert not differ, f"not byte-identical: {differ}"
    for n in files:
        if n.endswith(".json"):  # the sidecars: the same facts, the same file hashes; only date and timings move
            assert _sidecar_facts(first / n) == _sidecar_facts(again / n), n
    meta = json.loads((first / "demo_coco_256x192_fp32.tflite.json").read_text())
    assert meta["created"] and "seconds" in meta["conversion"]  # kept, in the sidecar only
